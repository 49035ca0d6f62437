"""Ranking arithmetic: best chunk per document, late reranking, rank fusion, snippets.

Pure functions over scores and vectors; the API fetches what they need from the store.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def best_chunks(qvec: np.ndarray, rows: Sequence, vectors: np.ndarray) -> dict[int, tuple[float, object]]:
    """``doc_id → (score, chunk row)`` of each document's highest-scoring chunk."""
    if not len(rows):
        return {}
    scores = vectors @ qvec
    best: dict[int, tuple[float, object]] = {}
    for row, score in zip(rows, scores):
        current = best.get(row.doc_id)
        if current is None or score > current[0]:
            best[row.doc_id] = (float(score), row)
    return best


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


def snippet(text: str, words: int) -> str:
    """The first ``words`` words of ``text`` on one line (display only; never used to embed)."""
    parts = text.split()
    short = " ".join(parts[:words])
    return short + (" …" if len(parts) > words else "")
