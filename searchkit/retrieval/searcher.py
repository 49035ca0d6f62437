"""Query orchestration: the candidate lists a search builds (dense, late, keyword), how they
are fused, and how ranked ids become hits with their best passage.

A :class:`Searcher` reads one snapshot of a storage backend (:class:`ReadView`). It takes the
query as a vector and text and never loads a model: :class:`searchkit.SearchIndex` checks the
arguments and embeds the query (keeping the last few vectors in a :class:`QueryVectors`). The
ranking arithmetic is in :mod:`searchkit.retrieval.ranking`.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ..backends.base import (Backend, ChunkSpans, DocRow, ReadView, best_chunk_of_documents,
                             best_of_chunks, chunk_cosines, chunk_spans, passage_bm25)
from ..config import SearchConfig
from ..filters import Filters
from ..hits import Hit, Passage
from . import fusion as adaptive_fusion
from ..pages import PAGED_KINDS, page_at
from . import ranking

QUERY_CACHE = 32  # query embeddings kept per open index

Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True, eq=False)
class Query:
    """One search with its arguments checked and defaults filled in."""

    vector: np.ndarray | None          # the query embedding; None in keyword mode
    text: str | None                   # the query text if it has keyword terms and the mode
                                       # reads them (not dense), else None
    k: int
    mode: str                          # one of config.MODES
    rerank: str                        # one of config.RERANKS
    fusion: str                        # one of config.FUSIONS
    filters: Filters | None = None
    chunks: bool = False
    distinct: bool = False


class QueryVectors:
    """The last few query embeddings, newest last: one query is often asked again with other
    filters, modes or ``k``, and :meth:`SearchIndex.search_many` embeds its queries in batches
    ahead of searching them."""

    def __init__(self, size: int = QUERY_CACHE):
        self.size = size
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()   # many threads may search one index

    def __contains__(self, query: str) -> bool:
        with self._lock:
            return query in self._vectors

    def get(self, query: str, encode: Encode) -> np.ndarray:
        """The query's embedding, from ``encode`` only when it is not kept (encoded outside
        the lock: two threads asking for one new query may both encode it, alike)."""
        with self._lock:
            vector = self._vectors.pop(query, None)
        if vector is None:
            vector = encode([query])[0]
        with self._lock:
            self._vectors[query] = vector
            self._trim()
        return vector

    def add(self, queries: Sequence[str], vectors: Sequence[np.ndarray]) -> None:
        with self._lock:
            self._vectors.update(zip(queries, vectors))
            self._trim()

    def _trim(self) -> None:
        while len(self._vectors) > self.size:
            del self._vectors[next(iter(self._vectors))]


class Searcher:
    """Runs :class:`Query` objects against one index's backend."""

    def __init__(self, backend: Backend, settings: SearchConfig):
        self.backend = backend
        self.settings = settings

    def run(self, query: Query) -> list[Hit]:
        """Documents (or passages with ``query.chunks``) for a checked query, best first."""
        # One read snapshot: a commit landing mid-search cannot pair vector ids of one
        # generation with rows of another.
        with self.backend.snapshot() as view:
            if query.chunks:
                return self._passages(view, query)
            return self._documents(view, query)

    def _documents(self, view: ReadView, query: Query) -> list[Hit]:
        settings = self.settings
        qvec, text, k, mode, filters = query.vector, query.text, query.k, query.mode, query.filters
        adaptive = mode == "hybrid" and query.fusion == "adaptive"
        depth = k if mode == "dense" and query.rerank != "late" else max(k, settings.rerank_depth)
        lists: dict[str, dict[int, float]] = {}   # "dense" cosines, "late", "keyword" BM25
        if qvec is not None:
            lists["dense"] = view.vector_search("documents", qvec, depth, filters)
            # Adaptive fusion weighs the best late chunk as a list of its own.
            if query.rerank == "late" and not adaptive:
                lists["late"] = ranking.late_rerank(lists["dense"], self._best_chunk_scores(
                    view, qvec, lists["dense"]), settings.chunk_weight)
        if mode != "dense":
            lists["keyword"] = view.keyword_documents(text, depth, filters) if text else {}
        vector = lists.get("late", lists.get("dense", {}))
        chunk_keyword = None
        scored = None   # the candidates' chunks with their cosines, if computed
        if adaptive:
            if adaptive_fusion.SHIPPED.late_share > 0:
                # Each candidate's best late chunk, over all its chunks (one matrix product).
                # The candidates are the two lists' (already filtered): documents found only
                # by a chunk-vector search changed no shared set's nDCG@10 (BENCHMARKS.md).
                candidates = dict.fromkeys([*lists.get("dense", {}), *lists.get("keyword", {})])
                scored = chunk_cosines(view, qvec, candidates)
                lists["best_chunk"] = best_of_chunks(*scored)
            final, chunk_keyword = self._adaptive(view, lists, text, depth, k)
        elif mode == "hybrid":
            final = ranking.fuse(vector, lists["keyword"], query.fusion, settings.keyword_weight,
                                 settings.rrf_k, depth)
        else:
            final = vector if mode == "dense" else lists["keyword"]
        order = sorted(final, key=final.__getitem__, reverse=True)[:k]   # stable: ties keep order
        return self._hits(view, order, final, qvec, text, lists, chunk_keyword, scored)

    def _best_chunk_scores(self, view: ReadView, qvec: np.ndarray,
                           doc_ids: Mapping[int, float]) -> dict[int, float]:
        """``doc id → cosine`` of each document's best chunk (all its chunks, one matrix product)."""
        return best_chunk_of_documents(view, qvec, doc_ids)

    def _adaptive(self, view: ReadView, lists: Mapping[str, Mapping[int, float]],
                  text: str | None, depth: int, k: int) -> tuple[dict[int, float], dict[int, float]]:
        """Query-adaptive fusion (:mod:`searchkit.retrieval.fusion`): ``id → score``, and the
        BM25 of the matching chunks of the first stage's head (``chunk id → score``), which
        also pick the hits' passages."""
        weights = dataclasses.replace(adaptive_fusion.SHIPPED,
                                      head=max(k, adaptive_fusion.SHIPPED.head))
        # Without a late list its column is all zeros, which a zero late_share never reads.
        ev = adaptive_fusion.gather({"dense": lists.get("dense", {}),
                                     "late": lists.get("best_chunk", {}),
                                     "keyword": lists.get("keyword", {})}, depth)
        if not len(ev.ids):
            return {}, {}
        first = adaptive_fusion.first_stage(ev, weights)
        head = ev.ids[np.argsort(-first, kind="stable")[:weights.head]]
        chunk_keyword, best = passage_bm25(view, text, head.tolist()) \
            if text and lists.get("keyword") else ({}, {})
        passage = np.zeros(len(ev.ids))
        if best:
            docs = np.fromiter(best.keys(), dtype=np.int64, count=len(best))
            sorter = np.argsort(ev.ids)
            passage[sorter[np.searchsorted(ev.ids, docs, sorter=sorter)]] = list(best.values())
        final = adaptive_fusion.second_stage(first, passage, weights)
        return dict(zip(ev.ids.tolist(), final.tolist())), dict(chunk_keyword)

    def _hits(self, view: ReadView, order: list[int], final: Mapping[int, float],
              qvec: np.ndarray | None, text: str | None,
              lists: Mapping[str, Mapping[int, float]],
              chunk_keyword: Mapping[int, float] | None = None,
              scored: tuple[ChunkSpans, np.ndarray] | None = None) -> list[Hit]:
        """Hits for ranked document ids, each with its best passage and per-list scores
        (``chunk_keyword``: chunk BM25s already read for these documents, if any; ``scored``:
        chunks of a superset of them with their cosines, already computed).

        The passages are chosen over arrays: the chunks of the shown documents with their
        vectors (one matrix product) and their BM25 (one keyword read), no row per chunk.
        """
        rows = view.documents(order)
        order = [i for i in order if i in rows]   # defensive: rows come from the same snapshot
        if not order:
            return []
        if scored is not None:   # the shown documents' chunks among the candidates'
            wanted = np.sort(np.fromiter(order, dtype=np.int64, count=len(order)))
            doc_ids = scored[0].doc_ids
            shown = wanted[wanted.searchsorted(doc_ids).clip(0, len(wanted) - 1)] == doc_ids
            spans = ChunkSpans(*(getattr(scored[0], f)[shown]
                                 for f in ("ids", "doc_ids", "char_start", "char_end")))
            dense = scored[1][shown]
        else:
            spans = chunk_spans(view, doc_ids=order,
                                dim=qvec.shape[0] if qvec is not None else None)
            dense = spans.vectors @ qvec if qvec is not None else None
        if chunk_keyword is None:
            chunk_keyword = view.keyword_chunks(text, order) if lists.get("keyword") else {}
        keyword = _aligned(spans.ids, chunk_keyword) if chunk_keyword else None
        best = ranking.best_passage_positions(
            spans.doc_ids, spans.ids, dense, keyword, self.settings.rrf_k,
            fuse_lists=dense is not None and len(spans.ids) > 0 and bool(chunk_keyword))
        chunk_ids = spans.ids[best].tolist()
        scores = dense[best].tolist() if dense is not None else \
            [chunk_keyword.get(c, 0.0) for c in chunk_ids]
        # Each shown document's passage: its chunk, that chunk's span and its score.
        chosen = dict(zip(spans.doc_ids[best].tolist(), zip(
            chunk_ids, spans.char_start[best].tolist(), spans.char_end[best].tolist(), scores)))
        hits = []
        for rank, doc_id in enumerate(order, 1):
            row = rows[doc_id]
            passage = None
            doc_scores = {name: s[doc_id] for name, s in lists.items() if doc_id in s}
            if doc_id in chosen:
                chunk_id, start, end, score = chosen[doc_id]
                passage = _passage(row, start, end, score, chunk_id)
                if dense is not None:
                    doc_scores["chunk"] = score
            hits.append(self._hit(rank, final[doc_id], row, passage, doc_scores))
        return hits

    def _passages(self, view: ReadView, query: Query) -> list[Hit]:
        """Passages straight from the chunk indexes (several may come from one document, or
        only each document's best with ``distinct``): by chunk vector, by chunk BM25, or both
        fused."""
        settings = self.settings
        qvec, k, filters = query.vector, query.k, query.filters
        text = query.text if query.mode != "dense" else None
        both = qvec is not None and text is not None
        total = view.count("chunks")
        depth = max(k, settings.rerank_depth) if both else k
        # Adaptive fusion ranks documents; passage lists keep the fixed-weight fusion.
        fusion = "weighted" if query.fusion == "adaptive" else query.fusion
        while True:
            dense = view.vector_search("chunks", qvec, depth, filters) if qvec is not None else {}
            keyword = view.keyword_chunks(text, limit=depth, filters=filters) if text else {}
            final = ranking.fuse(dense, keyword, fusion, settings.keyword_weight,
                                 settings.rrf_k, depth) if both else dense or keyword
            ranked = sorted(final, key=lambda i: -final[i])
            if not query.distinct:
                order = ranked[:k]
                chunks = view.chunks(order)
                break
            # One passage per document: widen the search until k documents are found (or
            # every chunk was seen).
            chunks = view.chunks(ranked)
            best: dict[int, int] = {}
            for chunk_id in ranked:
                best.setdefault(chunks[chunk_id].doc_id, chunk_id)
            if len(best) >= k or depth >= total:
                order = list(best.values())[:k]
                break
            depth = min(total, depth * 8)
        rows = view.documents({c.doc_id for c in chunks.values()})
        hits = []
        order = [c for c in order if c in chunks and chunks[c].doc_id in rows]
        for rank, chunk_id in enumerate(order, 1):
            chunk = chunks[chunk_id]
            row = rows[chunk.doc_id]
            passage = _passage(row, chunk.char_start, chunk.char_end, final[chunk_id], chunk_id)
            scores = {name: s[chunk_id] for name, s in (("chunk", dense), ("keyword", keyword))
                      if chunk_id in s}
            hits.append(self._hit(rank, final[chunk_id], row, passage, scores))
        return hits

    def _hit(self, rank: int, score: float, row: DocRow, passage: Passage | None,
             scores: dict[str, float]) -> Hit:
        """The one place a hit is assembled: a document row, its passage and its scores."""
        return Hit(rank=rank, score=score, key=row.key, title=row.title, path=row.path,
                   doc_id=row.id, metadata=row.metadata,
                   snippet=ranking.snippet(passage.text if passage else row.text,
                                           self.settings.snippet_words),
                   passage=passage, scores=scores)


def _aligned(ids: np.ndarray, scores: Mapping[int, float]) -> np.ndarray:
    """``scores`` of ``ids`` as an array in their order, NaN where an id has none."""
    out = np.full(len(ids), np.nan)
    if scores and len(ids):
        keys = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
        values = np.fromiter(scores.values(), dtype=float, count=len(scores))
        sorter = np.argsort(keys)
        where = np.minimum(np.searchsorted(keys, ids, sorter=sorter), len(keys) - 1)
        hit = keys[sorter[where]] == ids
        out[hit] = values[sorter[where[hit]]]
    return out


def _passage(row: DocRow, start: int, end: int, score: float, chunk_id: int) -> Passage:
    """The passage ``row.text[start:end]``, with its first page when the document has pages."""
    page = page_at(row.text, start) if row.kind in PAGED_KINDS else None
    return Passage(row.text[start:end], start, end, score, chunk_id, page)
