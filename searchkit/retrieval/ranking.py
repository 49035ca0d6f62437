"""Ranking arithmetic: late reranking, rank and score fusion,
best passages, snippets.

Pure functions over scores and vectors; the searcher fetches what they need from a backend.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def late_rerank(doc_scores: Mapping[int, float], chunk_scores: Mapping[int, float],
                chunk_weight: float) -> dict[int, float]:
    """Second stage: ``(1 − w)·document score + w·best chunk score``.

    The document vector says what the whole document is about; the best late chunk says
    whether one passage answers the query, in the context of its document. A document with
    no chunk keeps its document score.
    """
    return {d: (1.0 - chunk_weight) * s + chunk_weight * chunk_scores.get(d, s)
            for d, s in doc_scores.items()}


def rrf(rankings: Sequence[Sequence[int]], k: int = 60,
        weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal rank fusion: ``Σ w / (k + rank)`` over the ranked id lists (ranks from 1)."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def weighted_fusion(dense: Mapping[int, float], keyword: Mapping[int, float],
                    keyword_weight: float, depth: int | None = None) -> dict[int, float]:
    """``(1 − w)·cosine + w·BM25 / best BM25`` over the union of both candidate lists.

    The cosine is used as it is: it already lives on a fixed scale, and its level says how
    sure the vectors are (when every candidate scores about the same, the dense side barely
    moves the order). BM25 is unbounded and grows with query length, so it is divided by the
    best BM25 among the keyword candidates (ratios, hence BM25's own confidence, are kept).
    A document missing from a list gets the most it can score there: that list's lowest
    candidate score, or 0 for BM25 when the keyword list is complete (shorter than ``depth``,
    the number asked for), since then a missing document matched no query term. Min-max
    scaling both lists, the textbook alternative, stretches an undecided list to the full
    [0, 1] range: it ties on git_whatis and loses badly where one list is decisive (passkey
    sets; BENCHMARKS.md, "Hybrid search").
    """
    if not keyword:
        return dict(dense)
    best = max(keyword.values())
    kw = {i: s / best for i, s in keyword.items()} if best > 0 else {i: 0.0 for i in keyword}
    floor_dense = min(dense.values()) if dense else 0.0
    floor_kw = min(kw.values()) if depth is None or len(kw) >= depth else 0.0
    return {i: (1.0 - keyword_weight) * dense.get(i, floor_dense)
            + keyword_weight * kw.get(i, floor_kw) for i in dict.fromkeys([*dense, *keyword])}


def fuse(dense: Mapping[int, float], keyword: Mapping[int, float], method: str,
         keyword_weight: float = 0.5, rrf_k: int = 60, depth: int | None = None) -> dict[int, float]:
    """Fuse a dense (cosine) and a keyword (BM25) ranking, ``id → score``, higher better.

    ``weighted`` is :func:`weighted_fusion` (``depth``: candidates asked of each list);
    ``rrf`` weighs the lists' reciprocal ranks
    ``2·(1 − w)`` and ``2·w`` (so ``w = 0.5`` is plain RRF). A list that is empty leaves the
    other's order.
    """
    if method == "weighted":
        return weighted_fusion(dense, keyword, keyword_weight, depth)
    if method != "rrf":
        raise ValueError(f"unknown fusion {method!r}")
    order = [sorted(dense, key=lambda i: -dense[i]), sorted(keyword, key=lambda i: -keyword[i])]
    return rrf(order, rrf_k, [2.0 * (1.0 - keyword_weight), 2.0 * keyword_weight])


def best_passages(doc_ids: Sequence[int], rows: Sequence, dense: Mapping[int, float],
                  keyword: Mapping[int, float], rrf_k: int = 60) -> dict[int, object]:
    """``doc_id → chunk row`` of each document's best passage from chunk scores by id.

    With only one kind of score the highest wins; with both, the chunks of each document are
    fused by reciprocal rank within that document (a chunk that matches no query term has no
    keyword rank). Documents without scored chunks are left out.
    """
    by_doc: dict[int, list] = {}
    for row in rows:
        if row.id in dense or row.id in keyword:
            by_doc.setdefault(row.doc_id, []).append(row)
    best = {}
    for doc_id in doc_ids:
        chunks = by_doc.get(doc_id)
        if not chunks:
            continue
        ids = [c.id for c in chunks]
        scores = fuse({i: dense[i] for i in ids if i in dense},
                      {i: keyword[i] for i in ids if i in keyword}, "rrf", 0.5, rrf_k) \
            if dense and keyword else {i: dense.get(i, keyword.get(i, 0.0)) for i in ids}
        top = max(ids, key=lambda i: (scores.get(i, 0.0), -i))
        best[doc_id] = next(c for c in chunks if c.id == top)
    return best


def snippet(text: str, words: int) -> str:
    """The first ``words`` words of ``text`` on one line (display only; never used to embed)."""
    # Split off the first ``words`` words only: a remainder means there were more.
    parts = text.split(None, words)
    short = " ".join(parts[:words])
    return short + (" …" if len(parts) > words else "")


def best_passage_positions(doc_ids: np.ndarray, ids: np.ndarray, dense: np.ndarray | None,
                           keyword: np.ndarray | None, rrf_k: int = 60,
                           fuse_lists: bool = True) -> np.ndarray:
    """:func:`best_passages` over arrays: the position of each document's best chunk.

    ``doc_ids``, ``ids``: each chunk's document and id, grouped by document (ordered by
    document, then ordinal); ``dense``: each chunk's cosine (``None``: no vector scores);
    ``keyword``: each chunk's BM25, NaN where it matched no term (``None``: no chunk matched,
    or no keyword scores). ``fuse_lists``: both kinds
    of score exist for the query, so a document's chunks are fused by reciprocal rank within
    that document (each list's ties broken by chunk order); else the one score counts. Ties
    go to the lowest chunk id. Documents without a scored chunk get no position.
    """
    n = len(ids)
    if not n:
        return np.zeros(0, np.int64)
    if dense is not None and not fuse_lists:
        # Each document's highest cosine: a maximum per group, unless a tie needs the sort
        # (few numpy calls: a search asks this for the chunks of about ten documents).
        first = np.empty(n, bool)
        first[0] = True
        np.not_equal(doc_ids[1:], doc_ids[:-1], out=first[1:])
        starts = first.nonzero()[0]
        top = (dense == np.maximum.reduceat(dense, starts)[first.cumsum() - 1]).nonzero()[0]
        if len(top) == len(starts):
            return top
    if keyword is None:
        keyword = np.full(n, np.nan)
    in_kw = ~np.isnan(keyword)
    in_dense = np.ones(n, bool) if dense is not None else np.zeros(n, bool)
    candidate = in_dense | in_kw
    position = np.arange(n)
    # Each chunk's group (its document), numbered in order.
    group = np.concatenate([[0], np.cumsum(doc_ids[1:] != doc_ids[:-1])])
    if dense is not None and fuse_lists:
        score = np.where(in_dense, 1.0 / (rrf_k + _rank_in_group(group, dense, in_dense)), 0.0) \
            + np.where(in_kw, 1.0 / (rrf_k + _rank_in_group(group, keyword, in_kw)), 0.0)
    elif dense is not None:
        score = dense.astype(np.float64)
    else:
        score = np.where(in_kw, keyword, 0.0)
    chosen = position[candidate]
    order = chosen[np.lexsort((ids[chosen], -score[chosen], group[chosen]))]
    first = np.concatenate([[True], group[order][1:] != group[order][:-1]])
    return order[first]


def _rank_in_group(group: np.ndarray, score: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Each member's rank (from 1) by ``score`` descending within its group, ties in position
    order (a stable sort, as :func:`fuse` sorts); non-members get 1 (unused)."""
    rank = np.ones(len(group), np.int64)
    chosen = np.flatnonzero(member)
    if not len(chosen):
        return rank
    order = chosen[np.lexsort((chosen, -np.nan_to_num(score[chosen]), group[chosen]))]
    groups = group[order]
    starts = np.concatenate([[0], np.flatnonzero(groups[1:] != groups[:-1]) + 1])
    start_of = np.repeat(starts, np.diff(np.append(starts, len(order))))
    rank[order] = np.arange(len(order)) - start_of + 1
    return rank
