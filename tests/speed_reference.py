"""The read paths before issue 20, kept as references the fast path must equal
(tests/test_speed_equivalence.py) and as the "before" sides of benchmarks/bench_warm.py.

:class:`ReferenceSearcher`: every chunk row, vector blob and chunk BM25 read from SQLite per
query, BM25 ranked by FTS5's ``bm25()`` in SQL, one row object per chunk, passages chosen by
:func:`ranking.best_passages`. :class:`Fts5Searcher`: the step between, chunk spans and
vectors from memory but BM25 still from FTS5 in SQL.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from searchkit.backends.local.sql import fts_query, where_sql
from searchkit.hits import Hit
from searchkit.retrieval import ranking
from searchkit.retrieval.searcher import Searcher, _passage


class Fts5View:
    """The local read view with BM25 ranked by FTS5 in SQL (``bm25()``), as before the
    in-memory BM25 of backends/local/keywords.py; every other read as the view does it."""

    def __init__(self, view):
        self._view = view

    def __getattr__(self, name):
        return getattr(self._view, name)

    def keyword_documents(self, text, k, filters=None):
        match = fts_query(text)
        if match is None:
            return {}
        return self._view.store.keyword_documents(match, k, where_sql(filters) if filters else None)

    def keyword_chunks(self, text, doc_ids=None, limit=None, filters=None):
        match = fts_query(text)
        if match is None:
            return {}
        table = self._view._chunk_table() if doc_ids is not None else None
        if table is not None:
            # The chunks of given documents: one FTS5 cursor filtered by runs of chunk ids.
            ids = np.sort(table.columns[table.of_documents(doc_ids), 0])
            if not len(ids):
                return {}
            breaks = np.flatnonzero(np.diff(ids) != 1)
            starts, ends = np.r_[ids[0], ids[breaks + 1]], np.r_[ids[breaks], ids[-1]]
            if len(starts) <= 200:
                cond = " OR ".join("rowid BETWEEN ? AND ?" for _ in starts)
                rows = self._view.store.db.execute(
                    "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
                    f"AND ({cond}) ORDER BY bm25(chunks_fts)",
                    [match, *(int(v) for pair in zip(starts, ends) for v in pair)]).fetchall()
                return {int(i): float(s) for i, s in rows[:limit]}
        return self._view.store.keyword_chunks(match, doc_ids, limit,
                                               where_sql(filters) if filters else None)


class SqlView(Fts5View):
    """The local read view with every chunk read from SQLite, as before the chunk table."""

    def __getattr__(self, name):
        if name == "chunk_spans":
            raise AttributeError(name)   # the generic path of base.chunk_spans
        return getattr(self._view, name)

    def keyword_chunks(self, text, doc_ids=None, limit=None, filters=None):
        match = fts_query(text)
        if match is None:
            return {}
        return self._view.store.keyword_chunks(match, doc_ids, limit,
                                               where_sql(filters) if filters else None)

    def chunks(self, ids):
        return self._view.store.chunks(list(ids))

    def chunks_of(self, doc_ids, dim=None):
        doc_ids = list(doc_ids)
        if dim is None:
            return self._view.store.chunk_rows(doc_ids), None
        return self._view.store.chunks_of(doc_ids, dim)


def best_chunks(qvec, rows, vectors) -> dict[int, tuple[float, object]]:
    """``doc_id → (score, chunk row)`` of each document's highest-scoring chunk (the previous
    per-row loop of late reranking)."""
    if not len(rows):
        return {}
    scores = vectors @ qvec
    best: dict[int, tuple[float, object]] = {}
    for row, score in zip(rows, scores):
        current = best.get(row.doc_id)
        if current is None or score > current[0]:
            best[row.doc_id] = (float(score), row)
    return best


class Fts5Searcher(Searcher):
    """The read path between issue 20's two steps: chunk spans and vectors from memory, BM25
    from FTS5 in SQL."""

    def run(self, query):
        with self.backend.snapshot() as view:
            view = Fts5View(view)
            return self._passages(view, query) if query.chunks else self._documents(view, query)


class ReferenceSearcher(Searcher):
    """The previous assembly of hits: one row object per chunk, passages by
    :func:`ranking.best_passages`."""

    def run(self, query):
        with self.backend.snapshot() as view:
            view = SqlView(view)
            return self._passages(view, query) if query.chunks else self._documents(view, query)

    def _best_chunk_scores(self, view, qvec, doc_ids):
        rows_c, vecs_c = view.chunks_of(list(doc_ids), qvec.shape[0])
        return {d: s for d, (s, _) in best_chunks(qvec, rows_c, vecs_c).items()}

    def _hits(self, view, order, final, qvec, text, lists: Mapping[str, Mapping[int, float]],
              chunk_keyword=None, scored=None) -> list[Hit]:
        # ``scored`` (the candidates' chunk cosines) is ignored: every chunk is read again here.
        rows = view.documents(order)
        order = [i for i in order if i in rows]
        rows_c, vecs_c = view.chunks_of(order, qvec.shape[0] if qvec is not None else None)
        chunk_dense = dict(zip((c.id for c in rows_c), (vecs_c @ qvec).tolist())) \
            if qvec is not None else {}
        if chunk_keyword is None:
            chunk_keyword = view.keyword_chunks(text, order) if lists.get("keyword") else {}
        best = ranking.best_passages(order, rows_c, chunk_dense, chunk_keyword, self.settings.rrf_k)
        hits = []
        for rank, doc_id in enumerate(order, 1):
            row = rows[doc_id]
            passage = None
            scores = {name: s[doc_id] for name, s in lists.items() if doc_id in s}
            if doc_id in best:
                chunk = best[doc_id]
                score = chunk_dense.get(chunk.id, chunk_keyword.get(chunk.id, 0.0))
                passage = _passage(row, chunk.char_start, chunk.char_end, score, chunk.id)
                if chunk.id in chunk_dense:
                    scores["chunk"] = chunk_dense[chunk.id]
            hits.append(self._hit(rank, final[doc_id], row, passage, scores))
        return hits
