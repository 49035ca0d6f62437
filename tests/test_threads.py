"""One SearchIndex shared by many threads while another process writes.

Eight threads run 100 mixed searches each (dense, keyword, hybrid, passages, filters) on one
open index, while tests/thread_writer.py changes it in another process round after round.
Every search must succeed, and every search that ran within one state of the index (the
generation was the same before and after it) must equal the single-threaded result for that
state, recorded by this test with a second, unshared index handle while the writer paused.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from searchkit import SearchIndex
from searchkit.config import Config

from proc_helpers import child_env
from thread_writer import config, record

THREADS = 8
QUERIES_PER_THREAD = 100
MIN_ROUNDS = 3  # writer rounds the searches must overlap
# (query, options): every mode, passages, late rerank, filters.
SPECS = [
    ("river mountain harbour", {"mode": "dense"}),
    ("glacier market", {"mode": "keyword"}),
    ("lantern compass meadow", {"mode": "hybrid"}),
    ("canyon orchard", {"mode": "hybrid", "fusion": "rrf"}),
    ("tunnel beacon", {"mode": "dense", "chunks": True}),
    ("quarry summit", {"mode": "hybrid", "chunks": True, "distinct": True}),
    ("prairie lagoon", {"mode": "dense", "rerank": "late"}),
    ("citadel festival", {"mode": "hybrid", "filters": {"where": "year>=1910"}}),
    ("archive engine", {"mode": "keyword", "filters": {"where": "group=even"}}),
    ("garden violin", {"mode": "dense", "filters": {"type": "record", "where": ["year<1905"]}}),
]


def _generation(ix: SearchIndex) -> int:
    with ix.backend.snapshot() as view:
        return view.generation


def _run(ix: SearchIndex, spec: int) -> list[dict]:
    query, options = SPECS[spec]
    return [hit.as_dict() for hit in ix.search(query, k=5, **options)]


@pytest.fixture
def shared_index(tmp_path: Path) -> Config:
    cfg = config(str(tmp_path / "ix"))
    with SearchIndex.open(config=cfg, create=True) as ix:
        ix.add_records([record(i, 0) for i in range(40)])
    return cfg


def test_threads_share_one_index_while_another_process_writes(shared_index, tmp_path):
    signals = tmp_path / "signals"
    signals.mkdir()
    writer = subprocess.Popen([sys.executable, str(Path(__file__).parent / "thread_writer.py"),
                               shared_index.index, str(signals)], env=child_env())
    expected: dict[int, list[list[dict]]] = {}
    results: list[tuple[int, int, int, list[dict]]] = []   # (spec, generation before, after, hits)
    errors: list[BaseException] = []
    lock = threading.Lock()
    try:
        with SearchIndex.open(config=shared_index) as shared, \
                SearchIndex.open(config=shared_index) as solo:

            rounds = [0]  # writer rounds seen so far (read by the readers)

            def reader(seed: int) -> None:
                try:
                    n = 0
                    # At least QUERIES_PER_THREAD each, and on until the writer has changed the
                    # index a few times: on a loaded machine the readers may be the faster side.
                    while n < QUERIES_PER_THREAD or rounds[0] < MIN_ROUNDS:
                        n += 1
                        spec = (seed * 3 + n) % len(SPECS)
                        before = _generation(shared)
                        hits = _run(shared, spec)
                        after = _generation(shared)
                        with lock:
                            results.append((spec, before, after, hits))
                        time.sleep(0.002)  # let the writer in now and then
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=reader, args=(t,)) for t in range(THREADS)]
            round_ = 0
            while round_ == 0 or any(t.is_alive() for t in threads):
                paused = signals / f"paused_{round_}"
                deadline = time.monotonic() + 120
                while not paused.exists():
                    assert writer.poll() is None, "the writer died"
                    assert time.monotonic() < deadline, "the writer stalled"
                    time.sleep(0.005)
                # The state the writer paused in, searched by one thread on its own handle.
                expected[_generation(solo)] = [_run(solo, s) for s in range(len(SPECS))]
                if round_ == 0:  # the writer is up: the readers start
                    for t in threads:
                        t.start()
                time.sleep(0.2)  # searches in this state
                (signals / f"go_{round_}").write_text("")
                round_ += 1
                rounds[0] = round_
            for t in threads:
                t.join()
    finally:
        (signals / "stop").write_text("")
        writer.wait(timeout=60)

    assert not errors, errors[:3]
    assert writer.returncode == 0
    assert len(results) >= THREADS * QUERIES_PER_THREAD
    assert round_ >= MIN_ROUNDS, "the writer wrote too little during the searches"
    checked = 0
    for spec, before, after, hits in results:
        assert len(hits) == 5 or SPECS[spec][1].get("filters"), (SPECS[spec], len(hits))
        if before == after and before in expected:
            assert hits == expected[before][spec], (SPECS[spec], before)
            checked += 1
    # Many searches run while the writer waits; every one of those was compared.
    assert checked >= 100, (checked, len(results))
