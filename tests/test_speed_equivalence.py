"""The fast read path (issue 20) returns exactly what the previous one returned.

Passages used to be chosen from chunk rows and vector blobs read from SQLite for every query,
one row object per chunk; now the local backend serves chunk spans and vectors from memory
(``backends/local/chunktable.py``) and the searcher chooses passages over arrays
(``ranking.best_passage_positions``). The reference, tests/speed_reference.py, is the previous code:
a read view that reads chunks from SQLite only and ranks BM25 with FTS5's ``bm25()``, and the
previous per-row passage choice; also the step between (chunks from memory, BM25 from FTS5),
since BM25 is now ranked in memory (backends/local/keywords.py).
Every mode, fusion, rerank, passage search, filter and ``k`` must give equal hits: ids,
ranks, scores, passages and offsets.
"""

from __future__ import annotations

import dataclasses
import itertools
import numpy as np
import pytest

from searchkit import SearchIndex
from searchkit.backends.base import ChunkSpans, best_chunk_of_documents, chunk_cosines, chunk_spans
from searchkit.backends.local.chunktable import ChunkTable
from searchkit.config import ChunkingConfig, Config, IngestConfig, ModelConfig
from searchkit.embedding.fake import FAKE_MODEL
from searchkit.retrieval import ranking

from speed_reference import Fts5Searcher, ReferenceSearcher, SqlView

WORDS = ("river mountain harbour engine garden violin glacier market lantern compass meadow "
         "canyon orchard tunnel beacon quarry summit prairie lagoon citadel festival archive "
         "copper falcon marble thunder").split()
QUERIES = ["river mountain harbour", "glacier market", "lantern compass meadow engine",
           "canyon", "tunnel beacon quarry summit prairie", "falcon thunder copper marble",
           "nothingmatchesthis", "record 7 unique7"]
FILTERS = [None, {"where": "year>=1910"}, {"where": "group=even"}]


def long_record(i: int) -> tuple[str, str, dict]:
    """A record of a few hundred words (several 16-token chunks), words varying with ``i``;
    every fifth repeats record 0's words so scores tie."""
    seed = 0 if i % 5 == 0 else i
    words = " ".join(WORDS[(seed * 7 + j * j + j // 9) % len(WORDS)] for j in range(60 + i % 7 * 25))
    return f"r{i}", f"Record {i} unique{i}. {words}.", {"year": 1900 + i % 20,
                                                          "group": "even" if i % 2 == 0 else "odd"}


def make_config(folder: str, ann_type: str = "flat") -> Config:
    cfg = Config(index=folder, model=ModelConfig(name=FAKE_MODEL),
                 chunking=ChunkingConfig(size=16), ingest=IngestConfig(commit_every=7))
    return dataclasses.replace(cfg, ann=dataclasses.replace(cfg.ann, type=ann_type, nlist=4))


@pytest.fixture(scope="module", params=["flat", "ivf", "hnsw"])
def index(request, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp(request.param) / "ix")
    ix = SearchIndex.open(config=make_config(folder, request.param), create=True)
    ix.add_records([long_record(i) for i in range(60)])
    # Replaced and removed records leave gaps in the ids (and HNSW tombstones).
    ix.add_records([long_record(i) for i in (3, 11)])
    ix.remove(["r17", "r40"])
    yield ix
    ix.close()


def test_chunk_table_holds_every_live_chunk(index):
    with index.backend.snapshot() as view:
        table = view._chunk_table()
        assert table is not None
        rows, vectors = view.store.chunks_of(view.store.ids("documents").tolist(), table.vectors.shape[1])
        assert [r.id for r in rows] == table.columns[:, 0].tolist()
        assert np.array_equal(table.vectors_at(np.arange(len(rows))), vectors)
        spans = chunk_spans(SqlView(view), doc_ids=[5, 2, 9], dim=vectors.shape[1])
        fast = chunk_spans(view, doc_ids=[5, 2, 9], dim=vectors.shape[1])
        for name in ("ids", "doc_ids", "char_start", "char_end", "vectors"):
            assert np.array_equal(getattr(spans, name), getattr(fast, name)), name


def test_chunk_lookups_by_direct_array_equal_binary_search(index):
    # Chunk and document ids index arrays directly where they are dense; where they are
    # sparse (many replaced documents) a binary search serves. Both give the same positions.
    from searchkit.backends.local import chunktable
    with index.backend.snapshot() as view:
        table = view._chunk_table()
        ids = table.columns[:, 0]
        docs = np.unique(table.columns[:, 1])
        asks = [ids[::-3], np.r_[ids[5], -1, 10**9, ids[0]], ids[:0]]
        gaps = np.setdiff1d(np.arange(docs.max()), docs)[:3]   # ids of removed documents
        doc_asks = [docs[::2], np.r_[docs[-1], -7, 10**9, docs[0], docs[0]], docs[:0],
                    np.r_[gaps, docs[1]]]
        direct = [table.of_ids(a) for a in asks], [table.of_documents(d) for d in doc_asks]
        assert table._at_id is not None and table._doc_range is not None
        sparse = dataclasses.replace(table)   # the same table, lookups by binary search
        for name in ("_by_id", "_sorted_ids"):
            object.__setattr__(sparse, name, getattr(table, name))
        object.__setattr__(sparse, "_at_id", None)
        object.__setattr__(sparse, "_doc_range", None)
        for a, want in zip(asks, direct[0]):
            assert sparse.of_ids(a).tolist() == want.tolist()
        for d, want in zip(doc_asks, direct[1]):
            assert sparse.of_documents(d).tolist() == want.tolist()
    assert chunktable._direct(np.array([3, 10**7]), np.array([0, 1])) is None
    assert chunktable._direct(np.array([2, 0]), np.array([5, 6])).tolist() == [6, -1, 5]


def test_every_search_equals_the_previous_path(index):
    reference = ReferenceSearcher(index.backend, index.config.search)
    between = Fts5Searcher(index.backend, index.config.search)
    fast = index._searcher
    compared = 0
    combos = itertools.product(QUERIES, ["dense", "keyword", "hybrid"],
                               ["adaptive", "weighted", "rrf"], ["none", "late"],
                               [(False, False), (True, False), (True, True)], FILTERS, [1, 4, 10])
    for query, mode, fusion, rerank, (chunks, distinct), filters, k in combos:
        if mode != "hybrid" and fusion != "adaptive" or chunks and rerank == "late":
            continue   # fusion only matters in hybrid; rerank never in passage search
        options = dict(k=k, mode=mode, fusion=fusion, rerank=rerank, chunks=chunks,
                       distinct=distinct, filters=filters)
        index._searcher = fast
        got = [h.as_dict() for h in index.search(query, **options)]
        index._searcher = reference
        want = [h.as_dict() for h in index.search(query, **options)]
        index._searcher = between
        step = [h.as_dict() for h in index.search(query, **options)]
        index._searcher = fast
        assert got == want == step, (query, options)
        compared += 1
    assert compared > 1000


def test_best_chunk_of_documents_is_each_documents_best_chunk(index):
    # Each candidate's best late chunk (the adaptive fusion's late column, the late rerank):
    # from the chunk table (a few documents: their rows gathered; many: every vector scored
    # in one pass), and by the generic path over chunk_spans, against every chunk row's
    # vector read from SQLite and scored one by one; unknown ids and repeats are ignored.
    from searchkit.backends.local import chunktable

    class Generic:   # the read view without its own chunk reads
        def __init__(self, view):
            self.view = view

        def __getattr__(self, name):
            if name in ("chunk_cosines", "chunk_spans"):
                raise AttributeError(name)
            return getattr(self.view, name)

    embedder = index.embedder
    with index.backend.snapshot() as view:
        docs = view.store.ids("documents").tolist()
        dim = index.model_info.dimension
        n_chunks = view.count("chunks")
        few = [docs[-1], docs[0], 10**9, docs[5], docs[0]]
        for asked in (few, docs):
            rows, vectors = view.store.chunks_of(sorted(set(asked) & set(docs)), dim)
            # The two branches of the chunk table: gathered rows, and the full pass.
            assert (len(rows) * chunktable.GATHER_SHARE >= n_chunks) == (asked is docs)
            for query in QUERIES:
                qvec = embedder.encode_queries([query])[0]
                want: dict[int, float] = {}
                for row, vector in zip(rows, vectors):
                    want[row.doc_id] = max(want.get(row.doc_id, -2.0), float(vector @ qvec))
                got = best_chunk_of_documents(view, qvec, asked)
                generic = best_chunk_of_documents(Generic(view), qvec, asked)
                assert set(got) == set(generic) == set(want) == set(asked) - {10**9}
                for d, score in want.items():
                    assert got[d] == pytest.approx(score, abs=1e-6) == generic[d], (query, d)
                # Every chunk's cosine, as the hits' passages reuse them.
                spans, cosines = chunk_cosines(view, qvec, asked)
                g_spans, g_cosines = chunk_cosines(Generic(view), qvec, asked)
                assert spans.ids.tolist() == g_spans.ids.tolist() == [r.id for r in rows]
                assert spans.char_start.tolist() == [r.char_start for r in rows]
                assert spans.vectors is None and g_spans.vectors is None
                assert cosines == pytest.approx(vectors @ qvec, abs=1e-6)
                assert g_cosines == pytest.approx(vectors @ qvec, abs=1e-6)


def test_best_passage_positions_ties_and_missing_scores():
    # Two documents: the first has tied cosines (lowest chunk id wins), the second has no
    # keyword match (reciprocal rank of its cosines alone).
    doc_ids = np.array([1, 1, 1, 2, 2])
    ids = np.array([10, 11, 12, 20, 21])
    dense = np.array([0.5, 0.9, 0.9, 0.1, 0.2], dtype=np.float32)
    keyword = np.array([np.nan, 2.0, 1.0, np.nan, np.nan])
    fused = ranking.best_passage_positions(doc_ids, ids, dense, keyword, 60, fuse_lists=True)
    assert fused.tolist() == [1, 4]
    plain = ranking.best_passage_positions(doc_ids, ids, dense, keyword, 60, fuse_lists=False)
    assert plain.tolist() == [1, 4]
    only_keyword = ranking.best_passage_positions(doc_ids, ids, None, keyword, 60)
    assert only_keyword.tolist() == [1]


def test_best_passage_by_cosine_alone_is_each_documents_maximum_lowest_id_on_ties():
    rng = np.random.default_rng(3)
    for _ in range(300):
        doc_ids = np.sort(rng.integers(0, 6, size=rng.integers(1, 25)))
        ids = rng.permutation(1000)[:len(doc_ids)]      # ids need not follow chunk order
        dense = rng.integers(0, 4, size=len(ids)).astype(np.float32) / 4   # many ties
        got = ranking.best_passage_positions(doc_ids, ids, dense, np.full(len(ids), np.nan),
                                             60, fuse_lists=False)
        want = [min(np.flatnonzero(doc_ids == d), key=lambda p: (-dense[p], ids[p]))
                for d in dict.fromkeys(doc_ids.tolist())]
        assert got.tolist() == want


def test_chunk_spans_default_works_from_rows_alone():
    class RowsOnly:   # a backend view with only the protocol's row methods
        def chunks(self, ids):
            from searchkit.backends.base import ChunkRow
            return {i: ChunkRow(i, i // 10, 0, 0, 1, i, i + 5) for i in ids if i != 13}

        def chunks_of(self, doc_ids, dim=None):
            return [], None

    spans = chunk_spans(RowsOnly(), ids=[12, 13, 11])
    assert isinstance(spans, ChunkSpans)
    assert spans.ids.tolist() == [12, 11] and spans.char_end.tolist() == [17, 16]


def test_chunk_table_refuses_an_index_missing_a_chunk(index):
    if index.config.ann.type == "hnsw":
        pytest.skip("HNSW keeps removed ids as tombstones")
    with index.backend.snapshot() as view:
        chunks_ann = index.backend.caches.get("chunks")
        partial = chunks_ann.copy()
        partial.remove(np.asarray(view.store.ids("chunks")[:1]))
        assert ChunkTable.build(view.store, partial) is None


def test_snippet_is_the_first_words_on_one_line_with_an_ellipsis_when_more_follow():
    def whole_split(text, words):   # the previous snippet: every word split off first
        parts = text.split()
        return " ".join(parts[:words]) + (" …" if len(parts) > words else "")
    rng = np.random.default_rng(5)
    pieces = ["a", "bb", " ", "\n", "\t", "\u00a0", "\u3000", "\u2028", "\x1c", "x y", "  "]
    for _ in range(3000):
        text = "".join(rng.choice(pieces, size=rng.integers(0, 20)))
        for words in (1, 2, 3, 5, 40):
            assert ranking.snippet(text, words) == whole_split(text, words), (text, words)
    assert ranking.snippet("one  two\nthree four", 3) == "one two three …"
