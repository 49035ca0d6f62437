"""`ingest.executor: ray`: the same index as the local executor, on a real local Ray cluster.

Ray binds its services to this machine's network address, not to loopback, so these tests run
in a private network namespace whose only interface is loopback (``unshare -n``): the first
test below re-runs this module there, and the others run only inside it. Storage tests use the
deterministic fake embedder; one test uses the real MiniLM to compare vectors with the local
executor.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="pip install 'searchkit[ray]'")

from searchkit import SearchIndex  # noqa: E402
from searchkit.config import Config, IngestConfig, ModelConfig, RayConfig  # noqa: E402
from searchkit.embedding.fake import FakeEmbedder  # noqa: E402

from proc_helpers import REPO, child_env  # noqa: E402

pytestmark = pytest.mark.slow

INSIDE = os.environ.get("SEARCHKIT_RAY_NETNS") == "1"
inside_only = pytest.mark.skipif(not INSIDE, reason="runs in the loopback-only namespace "
                                 "(test_ray_tests_in_a_loopback_only_network_namespace)")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
WORDS = ("river mountain forest desert ocean island valley glacier canyon meadow volcano "
         "harbor prairie tundra lagoon").split()


@pytest.mark.skipif(INSIDE, reason="this is the outer run")
def test_ray_tests_in_a_loopback_only_network_namespace():
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and {', '.join(missing) or 'unshare/ip'} for a private network namespace")
    env = dict(child_env(), SEARCHKIT_RAY_NETNS="1", OMP_NUM_THREADS="1")
    inner = (f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider "
             f"{Path(__file__).resolve()}")
    run = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1500)
    print(run.stdout[-6000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stdout[-6000:]
    assert "5 passed" in run.stdout


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray cluster (2 CPUs) for the module; tests join it through ``ray.address``."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _docs(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"doc-{i}", "text": " ".join(rng.choice(WORDS, size=int(rng.integers(40, 400))))
             + f" unique{i}."} for i in range(n)]


def _config(tmp: Path, address: str, executor: str = "ray", workers: int = 2) -> Config:
    return Config(index=str(tmp), model=ModelConfig(name="searchkit-fake"),
                  ingest=IngestConfig(executor=executor, commit_every=4),
                  ray=RayConfig(address=address, workers=workers, batch_tokens=600))


def _stored(folder: Path, config: Config) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    """key → (document vector, chunk vectors, chunk spans) read back from the index."""
    with SearchIndex.open(folder, config, embedder=FakeEmbedder()) as ix:
        with ix.backend.snapshot() as view:
            ids, vectors = view.vectors("documents")
            rows = view.documents(ids.tolist())
            chunks, chunk_vectors = view.chunks_of(ids.tolist(), vectors.shape[1])
    out = {}
    for doc_id, vector in zip(ids.tolist(), vectors):
        mine = [j for j, c in enumerate(chunks) if c.doc_id == doc_id]
        out[rows[doc_id].key] = (vector, chunk_vectors[mine],
                                 [(chunks[j].char_start, chunks[j].char_end) for j in mine])
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert np.abs(a[key][0] - b[key][0]).max() <= 1e-5
        assert a[key][2] == b[key][2]
        assert np.abs(a[key][1] - b[key][1]).max(initial=0) <= 1e-5


@inside_only
def test_ray_equals_local_and_is_incremental(tmp_path, ray_address):
    records = _docs(30)
    local_cfg = _config(tmp_path / "local", ray_address, executor="local")
    ray_cfg = _config(tmp_path / "ray", ray_address)
    with SearchIndex.open(tmp_path / "local", local_cfg, create=True, embedder=FakeEmbedder()) as ix:
        local_report = ix.add_records(records)
    with SearchIndex.open(tmp_path / "ray", ray_cfg, create=True, embedder=FakeEmbedder()) as ix:
        ray_report = ix.add_records(records)
        assert (ray_report.added, ray_report.updated) == (local_report.added, local_report.updated) == (30, 0)
        # A second run with two changed records embeds only those two, on the cluster.
        records[3]["text"] += " changed"
        records[7]["text"] += " changed"
        again = ix.add_records(records)
        assert (again.added, again.updated, again.unchanged) == (0, 2, 28)
        assert ix.search("unique7", k=1, mode="keyword")[0].key == "doc-7"
    with SearchIndex.open(tmp_path / "local", local_cfg, embedder=FakeEmbedder()) as ix:
        ix.add_records(records)
    _assert_same(_stored(tmp_path / "local", local_cfg), _stored(tmp_path / "ray", ray_cfg))


@inside_only
def test_ray_files_added_skipped_removed_like_local(tmp_path, ray_address):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, rec in enumerate(_docs(12, seed=1)):
        (corpus / f"f{i}.txt").write_text(rec["text"], encoding="utf-8")
    (corpus / "empty.txt").write_text("   \n", encoding="utf-8")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02" * 50)
    reports = {}
    for executor in ("local", "ray"):
        cfg = _config(tmp_path / executor, ray_address, executor=executor)
        with SearchIndex.open(tmp_path / executor, cfg, create=True, embedder=FakeEmbedder()) as ix:
            first = ix.add_paths([corpus])
            (corpus / "f0.txt").unlink()
            (corpus / "f1.txt").write_text("river river changed", encoding="utf-8")
            second = ix.add_paths([corpus])
            (corpus / "f0.txt").write_text(_docs(12, seed=1)[0]["text"], encoding="utf-8")
            (corpus / "f1.txt").write_text(_docs(12, seed=1)[1]["text"], encoding="utf-8")
        reports[executor] = [(r.added, r.updated, r.unchanged, r.removed,
                              sorted(s.reason for s in r.skipped)) for r in (first, second)]
    assert reports["ray"] == reports["local"]
    assert reports["ray"][0][0] == 12 and reports["ray"][1][3] == 1


@inside_only
def test_ray_matches_local_with_the_real_model(tmp_path, ray_address):
    """Same corpus and settings with all-MiniLM-L6-v2: vectors equal within 1e-5."""
    records = [{"id": f"r{i}", "text": text} for i, text in enumerate([
        "Volcanoes form where magma reaches the surface; an eruption throws ash and lava. " * 20,
        "Sourdough bread needs flour, water, salt and an active starter. " * 30,
        "A satellite stays in orbit because its speed balances the pull of gravity. " * 50,
    ])]
    stored = {}
    for executor in ("local", "ray"):
        cfg = dataclasses.replace(_config(tmp_path / executor, ray_address, executor=executor, workers=1),
                                  model=ModelConfig(name=MINILM))
        with SearchIndex.open(tmp_path / executor, cfg, create=True) as ix:
            ix.add_records(records)
            hits = ix.search("magma eruption", k=1)
            assert hits[0].key == "r0"
        with SearchIndex.open(tmp_path / executor, cfg) as ix, ix.backend.snapshot() as view:
            # Ids follow the order batches come back in (Ray's may differ): compare by key,
            # and chunks by (key, ordinal).
            ids, vectors = view.vectors("documents")
            rows = view.documents(ids.tolist())
            by_key = np.argsort([rows[int(i)].key for i in ids])
            chunk_ids, chunk_vectors = view.vectors("chunks")
            chunks = view.chunks(chunk_ids.tolist())
            by_place = sorted(range(len(chunk_ids)), key=lambda j: (
                rows[chunks[int(chunk_ids[j])].doc_id].key, chunks[int(chunk_ids[j])].ordinal))
            stored[executor] = (vectors[by_key], chunk_vectors[by_place])
    assert np.abs(stored["local"][0] - stored["ray"][0]).max() <= 1e-5
    assert stored["local"][1].shape == stored["ray"][1].shape
    assert np.abs(stored["local"][1] - stored["ray"][1]).max() <= 1e-5


@inside_only
def test_killed_actor_is_retried_and_every_document_stored_once(tmp_path, ray_address):
    """kill -9 on an embedding actor mid-run: Ray restarts it, the run finishes, no duplicates."""
    records = _docs(40, seed=2)
    cfg = _config(tmp_path / "ix", ray_address, workers=2)
    cfg = dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, batch_tokens=200))
    killed: list[int] = []
    pids = tmp_path / "pids"
    pids.mkdir()

    def kill_an_actor() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            working = sorted(pids.iterdir())
            if working:  # an actor is inside its first batch: kill it there
                pid = int(working[0].name)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    # SlowFake lives in this test module, which Ray workers cannot import: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    embedder = SlowFake(0.5, pids)
    killer = threading.Thread(target=kill_an_actor, daemon=True)
    killer.start()
    with SearchIndex.open(tmp_path / "ix", cfg, create=True, embedder=embedder) as ix:
        report = ix.add_records(records)
    killer.join(timeout=5)
    assert killed, "no embedding actor was found to kill"
    assert report.added == 40
    with SearchIndex.open(tmp_path / "ix", cfg, embedder=FakeEmbedder()) as ix:
        assert ix.stats()["documents"] == 40
        with ix.backend.snapshot() as view:
            keys = [r.key for r in view.documents(view.vectors("documents")[0].tolist()).values()]
    assert sorted(keys) == sorted(r["id"] for r in records)


N_KILL = 300  # enough commits (2 documents each) for a kill to land between two of them


@inside_only
def test_killed_driver_leaves_an_index_the_next_run_completes(tmp_path, ray_address):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, rec in enumerate(_docs(N_KILL, seed=3)):
        (corpus / f"d{i:02}.txt").write_text(rec["text"], encoding="utf-8")
    index = tmp_path / "ix"
    args = [sys.executable, "-m", "searchkit", "index", str(corpus), "--index", str(index),
            "--executor", "ray", "--set", "model.name=searchkit-fake",
            "--set", f"ray.address={ray_address}", "--set", "ray.batch_tokens=200",
            "--set", "ingest.commit_every=2", "-q"]
    env = child_env()
    proc = subprocess.Popen(args, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    committed = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        committed = _documents_committed(index)
        if committed:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the driver finished before it could be killed"
    assert 0 < committed < N_KILL
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    cfg = _config(index, ray_address)
    with SearchIndex.open(index, cfg, embedder=FakeEmbedder()) as ix:
        assert ix.stats()["documents"] == N_KILL
        with ix.backend.snapshot() as view:
            keys = [r.key for r in view.documents(view.vectors("documents")[0].tolist()).values()]
    assert len(keys) == len(set(keys)) == N_KILL


def _documents_committed(index: Path) -> int:
    db = index / "searchkit.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0


class SlowFake(FakeEmbedder):
    """The fake embedder, slowed down so an actor can be killed while it works; each process
    that embeds names itself by a file in ``pids`` (the actors' pids, for the test to kill)."""

    def __init__(self, delay: float, pids: Path):
        super().__init__()
        self.delay = delay
        self.pids = pids

    def token_matrices(self, docs, window_tokens=None, progress=None):
        (self.pids / str(os.getpid())).touch()
        time.sleep(self.delay)
        return super().token_matrices(docs, window_tokens, progress)
