"""Query orchestration: the candidate lists a search builds (dense, late, keyword), how they
are fused, and how ranked ids become hits with their best passage.

A :class:`Searcher` reads the store and the FAISS caches it is given. It takes the query as a
vector and an FTS5 expression and never loads a model: :class:`searchkit.SearchIndex` checks
the arguments and embeds the query (keeping the last few vectors in a :class:`QueryVectors`).
The ranking arithmetic is in :mod:`searchkit.search`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import ranking
from ..backends.local.caches import VectorCaches
from ..config import AnnConfig, SearchConfig
from ..records import Hit, Passage
from ..backends.local.store import Store

MODES = ("dense", "keyword", "hybrid")
FUSIONS = ("rrf", "weighted")
QUERY_CACHE = 32  # query embeddings kept per open index

Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True, eq=False)
class Query:
    """One search with its arguments checked and defaults filled in."""

    vector: np.ndarray | None          # the query embedding; None in keyword mode
    match: str | None                  # FTS5 expression (see search.fts_query); None: no terms
    k: int
    mode: str                          # one of MODES
    rerank: str                        # "none" or "late"
    fusion: str                        # one of FUSIONS
    where: tuple[str, list[Any]] | None = None   # SQL condition on ``documents d`` (filters)
    chunks: bool = False
    distinct: bool = False


class QueryVectors:
    """The last few query embeddings, newest last: one query is often asked again with other
    filters, modes or ``k``, and :meth:`SearchIndex.search_many` embeds its queries in batches
    ahead of searching them."""

    def __init__(self, size: int = QUERY_CACHE):
        self.size = size
        self._vectors: dict[str, np.ndarray] = {}

    def __contains__(self, query: str) -> bool:
        return query in self._vectors

    def get(self, query: str, encode: Encode) -> np.ndarray:
        """The query's embedding, from ``encode`` only when it is not kept."""
        vector = self._vectors.pop(query, None)
        if vector is None:
            vector = encode([query])[0]
        self._vectors[query] = vector
        self._trim()
        return vector

    def add(self, queries: Sequence[str], vectors: Sequence[np.ndarray]) -> None:
        self._vectors.update(zip(queries, vectors))
        self._trim()

    def _trim(self) -> None:
        while len(self._vectors) > self.size:
            del self._vectors[next(iter(self._vectors))]


class Searcher:
    """Runs :class:`Query` objects against one index's store and FAISS caches."""

    def __init__(self, store: Store, vectors: VectorCaches, settings: SearchConfig, ann: AnnConfig):
        self.store = store
        self.vectors = vectors
        self.settings = settings
        self.ann = ann

    def run(self, query: Query) -> list[Hit]:
        """Documents (or passages with ``query.chunks``) for a checked query, best first."""
        # One read snapshot: a commit landing mid-search cannot pair FAISS ids of one
        # generation with rows of another.
        with self.store.snapshot():
            if query.chunks:
                return self._passages(query.vector, query.match if query.mode != "dense" else None,
                                      query.k, query.where, query.fusion, query.distinct)
            return self._documents(query)

    def _documents(self, query: Query) -> list[Hit]:
        settings = self.settings
        qvec, match, k, mode, where = query.vector, query.match, query.k, query.mode, query.where
        allowed = self.store.filtered_ids(where) if where else None
        depth = k if mode == "dense" and query.rerank != "late" else max(k, settings.rerank_depth)
        lists: dict[str, dict[int, float]] = {}   # "dense" cosines, "late", "keyword" BM25
        if qvec is not None:
            lists["dense"] = self.ann_top("documents", qvec, depth, allowed)
            if query.rerank == "late":
                rows_c, vecs_c = self.store.chunks_of(list(lists["dense"]), qvec.shape[0])
                best = ranking.best_chunks(qvec, rows_c, vecs_c)
                lists["late"] = ranking.late_rerank(
                    lists["dense"], {d: s for d, (s, _) in best.items()}, settings.chunk_weight)
        if mode != "dense":
            lists["keyword"] = self.store.keyword_documents(match, depth, where) if match else {}
        vector = lists.get("late", lists.get("dense", {}))
        if mode == "hybrid":
            final = ranking.fuse(vector, lists["keyword"], query.fusion, settings.keyword_weight,
                                 settings.rrf_k, depth)
        else:
            final = vector if mode == "dense" else lists["keyword"]
        order = sorted(final, key=lambda i: -final[i])[:k]
        return self._hits(order, final, qvec, match, lists)

    def ann_top(self, table: str, qvec: np.ndarray, n: int,
                allowed: np.ndarray | None = None) -> dict[int, float]:
        """Top-``n`` live rows of ``table`` by vector: ``id → cosine``, best first.

        ``allowed`` (ids that pass the filters, read from SQLite) goes to FAISS as an id
        selector. Should an approximate index (IVF, HNSW) find fewer than ``n`` while more are
        allowed, the allowed rows are scored exactly from the vectors in SQLite.
        """
        index = self.vectors.get(table)
        live = self.store.count(table)
        # HNSW keeps removed ids as tombstones: ask for enough extra to still fill n. An
        # allowed set comes from SQLite and already excludes them.
        fetch = n + max(0, index.ntotal - live) if allowed is None else n
        scores, ids = index.search(qvec, fetch, nprobe=self.ann.nprobe,
                                   ef_search=self.ann.ef_search, allowed=allowed)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        if allowed is None and index.ntotal != live:
            rows = self.store.documents([i for i, _ in pairs]) if table == "documents" else \
                self.store.chunks([i for i, _ in pairs])
            pairs = [(i, s) for i, s in pairs if i in rows]
        if allowed is not None and len(pairs) < min(n, len(allowed)):
            found, vectors = self.store.vectors(table, qvec.shape[0], ids=allowed)
            exact = vectors @ qvec
            pairs = [(int(found[j]), float(exact[j])) for j in np.argsort(-exact, kind="stable")[:n]]
        return dict(pairs[:n])

    def _hits(self, order: list[int], final: Mapping[int, float], qvec: np.ndarray | None,
              match: str | None, lists: Mapping[str, Mapping[int, float]]) -> list[Hit]:
        """Hits for ranked document ids, each with its best passage and per-list scores."""
        rows = self.store.documents(order)
        order = [i for i in order if i in rows]   # defensive: rows come from the same snapshot
        if qvec is not None:
            rows_c, vecs_c = self.store.chunks_of(order, qvec.shape[0])
            chunk_dense = dict(zip((c.id for c in rows_c), (vecs_c @ qvec).tolist()))
        else:
            rows_c = self.store.chunk_rows(order)
            chunk_dense = {}
        chunk_keyword = self.store.keyword_chunks(match, order) if lists.get("keyword") else {}
        best = ranking.best_passages(order, rows_c, chunk_dense, chunk_keyword, self.settings.rrf_k)
        hits = []
        for rank, doc_id in enumerate(order, 1):
            row = rows[doc_id]
            passage = None
            scores = {name: s[doc_id] for name, s in lists.items() if doc_id in s}
            if doc_id in best:
                chunk = best[doc_id]
                score = chunk_dense.get(chunk.id, chunk_keyword.get(chunk.id, 0.0))
                passage = Passage(row.text[chunk.char_start:chunk.char_end], chunk.char_start,
                                  chunk.char_end, score, chunk.id)
                if chunk.id in chunk_dense:
                    scores["chunk"] = chunk_dense[chunk.id]
            hits.append(Hit(rank=rank, score=final[doc_id], key=row.key, title=row.title,
                            path=row.path, doc_id=doc_id, metadata=row.metadata,
                            snippet=ranking.snippet(passage.text if passage else row.text,
                                                    self.settings.snippet_words),
                            passage=passage, scores=scores))
        return hits

    def _passages(self, qvec: np.ndarray | None, match: str | None, k: int,
                  where: tuple[str, list[Any]] | None, fusion: str,
                  distinct: bool = False) -> list[Hit]:
        """Passages straight from the chunk indexes (several may come from one document, or
        only each document's best with ``distinct``): by chunk vector (``qvec``), by chunk
        BM25 (``match``), or both fused."""
        settings = self.settings
        both = qvec is not None and match is not None
        allowed = self.store.filtered_ids(where, "chunks") if where and qvec is not None else None
        total = self.store.count("chunks")
        depth = max(k, settings.rerank_depth) if both else k
        while True:
            dense = self.ann_top("chunks", qvec, depth, allowed) if qvec is not None else {}
            keyword = self.store.keyword_chunks(match, limit=depth, where=where) if match else {}
            final = ranking.fuse(dense, keyword, fusion, settings.keyword_weight, settings.rrf_k,
                                 depth) if both else dense or keyword
            ranked = sorted(final, key=lambda i: -final[i])
            if not distinct:
                order = ranked[:k]
                chunks = self.store.chunks(order)
                break
            # One passage per document: widen the search until k documents are found (or
            # every chunk was seen).
            chunks = self.store.chunks(ranked)
            best: dict[int, int] = {}
            for chunk_id in ranked:
                best.setdefault(chunks[chunk_id].doc_id, chunk_id)
            if len(best) >= k or depth >= total:
                order = list(best.values())[:k]
                break
            depth = min(total, depth * 8)
        rows = self.store.documents({c.doc_id for c in chunks.values()})
        hits = []
        order = [c for c in order if c in chunks and chunks[c].doc_id in rows]
        for rank, chunk_id in enumerate(order, 1):
            chunk = chunks[chunk_id]
            row = rows[chunk.doc_id]
            text = row.text[chunk.char_start:chunk.char_end]
            scores = {name: s[chunk_id] for name, s in (("chunk", dense), ("keyword", keyword))
                      if chunk_id in s}
            hits.append(Hit(rank=rank, score=final[chunk_id], key=row.key, title=row.title,
                            path=row.path, doc_id=row.id, metadata=row.metadata,
                            snippet=ranking.snippet(text, settings.snippet_words),
                            passage=Passage(text, chunk.char_start, chunk.char_end,
                                            final[chunk_id], chunk_id),
                            scores=scores))
        return hits
