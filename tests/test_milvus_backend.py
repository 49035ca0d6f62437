"""The Milvus backend through the storage protocols, on milvus-lite and on a real Milvus server:
round trips, filters, incremental writes, removal, a killed writer, the one-writer rule, and
the clear error for keyword search on a server without full-text search."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

from searchkit.errors import BackendError, IndexLockedError
from searchkit.filters import Filters
from searchkit.ingest.documents import Document
from searchkit.records import Chunk, EmbeddedDocument

pytest.importorskip("pymilvus", reason="pip install -e '.[milvus]'")

from searchkit.backends.milvus import MilvusBackend  # noqa: E402
from searchkit.config import MilvusConfig  # noqa: E402

DIM = 8
LEASE = 6.0   # a server writer's lease: a killed writer's expires this fast


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def embedded(key: str, text: str, seed: int, metadata=None, path=None, mtime=None,
             chunk_chars: int = 40) -> EmbeddedDocument:
    doc = Document(key=key, text=text, title=key.rsplit("/", 1)[-1], kind="txt" if path else "record",
                   content_hash=f"h{hash(text)}", path=path, size=len(text), mtime=mtime,
                   metadata=metadata or {})
    chunks = tuple(Chunk(n, n * 8, n * 8 + 8, start, min(len(text), start + chunk_chars), unit(seed * 1000 + n))
                   for n, start in enumerate(range(0, len(text), chunk_chars)))
    return EmbeddedDocument(doc, max(1, len(text) // 5), unit(seed), chunks)


@pytest.fixture
def backend(milvus_uri):
    # One server serves the whole session: each test gets its own collections.
    settings = MilvusConfig(uri=milvus_uri, collection_prefix=f"t{uuid.uuid4().hex[:10]}_",
                            index_type="FLAT", lease_seconds=LEASE)
    b = MilvusBackend(settings, create=True)
    yield b
    b.close()
    again = MilvusBackend(settings)
    again.drop()
    again.close()


def corpus() -> list[EmbeddedDocument]:
    return [
        embedded("/d/a.txt", "Volcanoes erupt lava and ash. " * 5, 1, {"year": 1900, "tags": ["War", "economy"]},
                 "/d/a.txt", 1000.0),
        embedded("/d/sub/b_1.txt", "git commit records changes to the repository", 2,
                 {"year": 2001, "author": {"name": "Lincoln"}}, "/d/sub/b_1.txt", 2000.0),
        embedded("r1", "a record about sourdough bread", 3, {"ok": True}),
    ]


def test_documents_round_trip_with_long_text(backend):
    # 70k characters of 3-byte text (210 kB): four text parts; one chunk over 65,535 bytes.
    long_text = "€" * 70_000
    with backend.write() as w:
        ids = w.replace([], [*corpus(), embedded("long", long_text, 9, chunk_chars=30_000)])
    with backend.snapshot() as view:
        rows = view.documents(ids)
        assert [rows[i].key for i in ids] == ["/d/a.txt", "/d/sub/b_1.txt", "r1", "long"]
        assert rows[ids[3]].text == long_text
        assert rows[ids[0]].metadata == {"year": 1900, "tags": ["War", "economy"]}
        assert rows[ids[2]].path is None and rows[ids[2]].mtime is None
        chunks, vectors = view.chunks_of([ids[3]], DIM)
        assert [c.char_end for c in chunks] == [30_000, 60_000, 70_000]
        assert vectors.shape == (3, DIM)
        assert view.count() == 4


def test_vector_search_returns_k_best_live_documents(backend):
    with backend.write() as w:
        ids = w.replace([], corpus())
    with backend.snapshot() as view:
        hits = view.vector_search("documents", unit(2), 2)
        assert list(hits)[0] == ids[1] and len(hits) == 2
        assert hits[ids[1]] == pytest.approx(1.0, abs=1e-5)


# On the server too through tests/test_backend_contract.py (23 filters against the local backend).
LITE_ONLY = pytest.mark.parametrize("milvus_uri", ["lite"], indirect=True)


@LITE_ONLY
@pytest.mark.parametrize("filters, expected", [
    (dict(where="year>=1950"), ["/d/sub/b_1.txt"]),
    (dict(where="tags=war"), ["/d/a.txt"]),                  # any element, case-insensitive
    (dict(where="tags!=war"), ["/d/sub/b_1.txt", "r1"]),     # a missing key is "not equal"
    (dict(where="author.name=lincoln"), ["/d/sub/b_1.txt"]),
    (dict(where="ok=true"), ["r1"]),
    (dict(path="/d/sub/"), ["/d/sub/b_1.txt"]),
    (dict(path="/d/sub/b_1.txt"), ["/d/sub/b_1.txt"]),
    (dict(type="record"), ["r1"]),
    (dict(since=1500), ["/d/sub/b_1.txt"]),
    (dict(until=1500), ["/d/a.txt"]),
    (dict(where=[("year", "=", 'x" or 1==1 or "')]), []),   # an injection attempt is a value
])
def test_filters(backend, filters, expected):
    with backend.write() as w:
        w.replace([], corpus())
    with backend.snapshot() as view:
        f = Filters.build(**filters)
        docs = view.documents(view.vector_search("documents", unit(5), 10, f))
        assert sorted(d.key for d in docs.values()) == expected
        chunk_hits = view.chunks(view.vector_search("chunks", unit(5), 100, f))
        assert sorted({docs[c.doc_id].key for c in chunk_hits.values()}) == expected


@LITE_ONLY
def test_replace_delete_and_ids_never_reused(backend):
    with backend.write() as w:
        first = w.replace([], corpus())
        states = w.states()
        assert states["r1"][0] == first[2]
        second = w.replace([first[2]], [embedded("r1", "a record about rye bread now", 4)])
        assert second[0] > max(first)
        assert w.states(["r1"])["r1"] == (second[0], f"h{hash('a record about rye bread now')}")
        assert w.paths_under("/d") == {"/d/a.txt": first[0], "/d/sub/b_1.txt": first[1]}
        w.delete([first[0]])
        w.relabel([(first[1], "New title", {"year": 1800})])
        assert w.restamp([("/d/sub/b_1.txt", 5, 3000.0), ("/nope", 1, 1.0)]) == 1
    with backend.snapshot() as view:
        assert view.count() == 2
        assert not view.documents([first[0], first[2]])
        assert not view.chunks_of([first[0], first[2]])[0]
        row = view.documents([first[1]])[first[1]]
        assert (row.title, row.metadata, row.mtime, row.size) == ("New title", {"year": 1800}, 3000.0, 5)
        # The relabelled metadata and the new mtime are what filters see, on chunks too.
        f = Filters.build(where="year<1850", since=2500)
        assert list(view.vector_search("documents", unit(1), 5, f)) == [first[1]]
        assert {c.doc_id for c in view.chunks(view.vector_search("chunks", unit(1), 50, f)).values()} == {first[1]}


def test_keyword_search(backend):
    # A chunk of 100 kB whose words come after a base64-like run still matches its words.
    blob = "rocks " + "A" * 100_000 + " pumice obsidian"
    with backend.write() as w:
        ids = w.replace([], [*corpus(), embedded("blob", blob, 6, chunk_chars=len(blob))])
    with backend.snapshot() as view:
        if not backend.full_text:
            with pytest.raises(BackendError, match=r"Milvus >= 2.5.*v2\.3"):
                view.keyword_documents("git commit", 5)
            return
        assert list(view.keyword_documents("git commit", 5)) == [ids[1]]
        assert list(view.keyword_documents("sourdough", 5, Filters.build(type="txt"))) == []
        hits = view.keyword_chunks("lava", limit=3)
        assert {view.chunks(hits)[c].doc_id for c in hits} == {ids[0]}
        hits = view.keyword_chunks("obsidian", limit=3)
        assert {view.chunks(hits)[c].doc_id for c in hits} == {ids[3]}
        assert list(view.keyword_documents("pumice", 3)) == [ids[3]]


def test_hnsw_returns_k_even_when_a_filter_leaves_few(milvus_uri):
    settings = MilvusConfig(uri=milvus_uri, collection_prefix=f"t{uuid.uuid4().hex[:10]}_",
                            index_type="HNSW")
    b = MilvusBackend(settings, create=True)
    try:
        docs = [embedded(f"k{i}", f"text {i}", i, {"n": i}) for i in range(300)]
        with b.write() as w:
            w.replace([], docs)
        with b.snapshot() as view:
            assert len(view.vector_search("documents", unit(7), 10)) == 10
            hits = view.vector_search("documents", unit(7), 10, Filters.build(where="n<4"))
            assert len(hits) == 4
            # Same order as exact scoring over the four that pass.
            ids, vectors = view.vectors("documents", list(hits))
            exact = dict(zip(ids.tolist(), (vectors @ unit(7)).tolist()))
            assert sorted(hits, key=lambda i: -exact[i]) == list(hits)
    finally:
        b.drop()


def test_second_writer_is_refused(backend):
    with backend.write():
        other = MilvusBackend(backend.settings)
        with pytest.raises(IndexLockedError):
            with other.write(wait=0.5):
                pass
    with MilvusBackend(backend.settings).write(wait=5):
        pass


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from searchkit.backends.milvus import MilvusBackend, backend as module
    from searchkit.config import MilvusConfig
    from test_milvus_backend import corpus, embedded
    b = MilvusBackend(MilvusConfig(uri={uri!r}, collection_prefix={prefix!r}, index_type="FLAT",
                                   lease_seconds={lease!r}))
    real = module.MilvusWriter._insert
    def insert(self, table, rows):
        real(self, table, rows)
        if table == {kill_after!r}:
            os.kill(os.getpid(), signal.SIGKILL)
    module.MilvusWriter._insert = insert
    with b.write() as w:
        old = w.states()["r1"][0]
        w.replace([old], [embedded("r1", "a second version", 7), embedded("new", "brand new", 8)])
""")


@pytest.mark.parametrize("kill_after", ["chunks", "documents"])
def test_killed_writer_leaves_nothing_half_written(backend, tmp_path, kill_after):
    with backend.write() as w:
        first = w.replace([], corpus())
    script = KILLED_WRITER.format(tests=os.path.dirname(__file__), uri=backend.settings.uri,
                                  prefix=backend.prefix, kill_after=kill_after, lease=LEASE)
    backend.close()   # milvus-lite lets one process at a time open its file
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    backend = MilvusBackend(backend.settings)
    with backend.snapshot() as view:
        # The batch in flight is invisible: neither its chunks nor its documents, and the
        # document it was replacing is hidden with it (it is named in the journal).
        assert view.count() == 2
        hits = view.chunks(view.vector_search("chunks", unit(7001), 100))
        assert {c.doc_id for c in hits.values()} <= {first[0], first[1]}
    with backend.write(wait=3 * LEASE) as w:   # the next writer finishes the killed run
        states = w.states()
        if kill_after == "documents":
            assert set(states) == {"/d/a.txt", "/d/sub/b_1.txt", "r1", "new"}
            assert states["r1"][0] > max(first)
        else:                        # rolled back: the old version is kept
            assert states == {k: v for k, v in zip(["/d/a.txt", "/d/sub/b_1.txt", "r1"],
                                                   [(first[0], states["/d/a.txt"][1]),
                                                    (first[1], states["/d/sub/b_1.txt"][1]),
                                                    (first[2], states["r1"][1])])}
    with backend.snapshot() as view:
        ids = set(view.vectors("documents")[0].tolist())
        chunk_docs = {c.doc_id for c in view.chunks_of(ids)[0]}
        assert chunk_docs == ids                 # no orphan chunks, no duplicates
        assert view.count("chunks") == len(view.chunks_of(ids)[0])
    backend.close()
