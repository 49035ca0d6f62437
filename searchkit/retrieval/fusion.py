"""Query-adaptive fusion of the evidence a hybrid search gathers: document-vector cosine and
document BM25 (each a top-``depth`` candidate list), each candidate's best late-chunk cosine
(over all its chunks), and the BM25 of the best passage of the first stage's head.

A fixed mix of the lists cannot suit every query: a needle lookup has one document with a
rare term far ahead in BM25 while the vectors barely move, and a paraphrased question has a
flat BM25 list and a clear vector winner. So each list's weight depends on how sure that list
looks for this query (how far its first score stands above the others, whether the lists
agree), through a small linear model whose weights are fitted offline
(``benchmarks/fusion_study.py``, leave-one-set-out over the shared eval sets) and shipped
below as numbers. Everything is a few small numpy operations over at most a few hundred
candidates: no model, no loop over candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

# Evidence lists, in the column order of :class:`Evidence` ("late": best late chunk per document).
LISTS = ("dense", "late", "keyword")


@dataclass(frozen=True)
class Evidence:
    """The candidates of one query and their score in each list.

    Attributes:
        ids: candidate document ids (the union of the lists), shape ``(n,)``.
        scores: ``(n, len(names))``; a candidate missing from a list gets that list's floor
            (its lowest score, or 0 for a BM25 list that holds every match).
        present: ``(n, len(names))`` bool: the candidate is in that list.
        tops: ``(len(names), depth)`` each list's scores, best first, padded with its floor.
        sizes: candidates in each list.
    """

    ids: np.ndarray
    scores: np.ndarray
    present: np.ndarray
    tops: np.ndarray
    sizes: np.ndarray


def gather(lists: Mapping[str, Mapping[int, float]], depth: int,
           names: Sequence[str] = LISTS) -> Evidence:
    """Line up the candidate lists (``id → score``, any order) as one :class:`Evidence`.

    A list not given (or empty) counts as absent: its column holds zeros and its size is 0.
    """
    order = list(dict.fromkeys(i for name in names for i in lists.get(name, {})))
    ids = np.asarray(order, dtype=np.int64)
    n = len(order)
    scores = np.zeros((n, len(names)))
    present = np.zeros((n, len(names)), dtype=bool)
    tops = np.zeros((len(names), max(depth, 2)))   # gaps read the first two
    sizes = np.zeros(len(names), dtype=np.int64)
    if n == 0:
        return Evidence(ids, scores, present, tops, sizes)
    where = {d: j for j, d in enumerate(order)}
    for col, name in enumerate(names):
        found = lists.get(name) or {}
        if not found:
            continue
        rows = np.fromiter((where[i] for i in found), dtype=np.int64, count=len(found))
        values = np.fromiter(found.values(), dtype=float, count=len(found))
        # BM25 lists shorter than asked hold every match: a missing document matched nothing.
        floor = 0.0 if name.endswith("keyword") and len(found) < depth else float(values.min())
        scores[:, col] = floor
        scores[rows, col] = values
        present[rows, col] = True
        best = np.sort(values)[::-1][:tops.shape[1]]
        tops[col, :] = floor
        tops[col, :len(best)] = best
        sizes[col] = len(found)
    return Evidence(ids, scores, present, tops, sizes)


@dataclass(frozen=True)
class Weights:
    """The numbers of the adaptive fusion (fitted by ``benchmarks/fusion_study.py``).

    First stage, over every candidate: ``(1 − w)·vector + w·BM25 / best BM25`` with
    ``vector = (1 − late_share)·document cosine + late_share·best late-chunk cosine`` and the
    keyword weight ``w`` rising from ``keyword_low`` to ``keyword_high`` as BM25's first
    document pulls ahead of its second (relative gap around ``keyword_gap``), less
    ``vector_gap_scale`` times the vector score's own first-to-second gap. Second stage,
    over the first stage's top ``head``: plus ``β·best passage BM25 / best passage BM25 of
    the head``, ``β`` rising from ``passage_low`` to ``passage_high`` around a relative gap
    of ``passage_gap`` between the best two documents' passages (a passage: two adjacent
    chunks scored as one, so a passage a chunk boundary cuts in two still counts whole).
    """

    late_share: float
    keyword_low: float
    keyword_high: float
    keyword_gap: float
    vector_gap_scale: float
    head: int
    passage_low: float
    passage_high: float
    passage_gap: float
    softness: float = 0.03   # width of each gate's rise, in relative-gap units


# Fitted on all seven shared sets (git_whatis, man_whatis, pg_refpurpose, passkey 512w / 2048w /
# 8192w / 32768w) by fusion_study.py, 2026-12-03, maximising mean nDCG@10, over the evidence
# the searcher gathers: every candidate's best late chunk, and the head's best passage of two
# adjacent chunks. The head (10 or 20) was chosen the same way, inside each held-out fold too
# (fusion_study.py --heads 20,10: every fold picked 10).
SHIPPED = Weights(late_share=0.5, keyword_low=0.1, keyword_high=0.5, keyword_gap=0.15,
                  vector_gap_scale=5.0, head=10, passage_low=0.2, passage_high=1.6, passage_gap=0.3)


def first_stage(ev: Evidence, w: Weights = SHIPPED) -> np.ndarray:
    """First-stage score of each candidate of :func:`gather` (columns in :data:`LISTS` order)."""
    return gated(ev.scores, ev.tops, w.late_share, w.keyword_low, w.keyword_high, w.keyword_gap,
                 w.vector_gap_scale, w.softness)


def second_stage(first: np.ndarray, passage_bm25: np.ndarray, w: Weights = SHIPPED) -> np.ndarray:
    """Final scores: the first stage plus the gated passage-BM25 term on its top ``w.head``.

    ``passage_bm25``: each candidate's best chunk BM25, 0 where none matched (only the head's
    are read).
    """
    head = np.zeros(first.shape, dtype=bool)
    head[np.argsort(-first, kind="stable")[:w.head]] = True
    return head_boost(first, passage_bm25, head, w.passage_low, w.passage_high, w.passage_gap,
                      w.softness)


def gated(scores: np.ndarray, tops: np.ndarray, late_share: float, kw_low: float,
          kw_high: float, kw_gap: float, vector_gap_scale: float = 0.0,
          softness: float = 0.03) -> np.ndarray:
    """``(1 − w)·((1 − a)·document cosine + a·late cosine) + w·BM25 / best BM25``, where the
    keyword weight ``w`` rises from ``kw_low`` to ``kw_high`` as BM25's first document pulls
    ahead of its second (relative gap around ``kw_gap``), less ``vector_gap_scale`` times the
    gap between the vector score's own first two (a sure vector list keeps its weight)."""
    top = tops[..., 2, :2]
    best = np.where(top[..., 0] > 0, top[..., 0], 1.0)
    gap = np.where(top[..., 0] > 0, 1.0 - top[..., 1] / best, 0.0)
    kwn = np.where(top[..., :1] > 0, scores[..., 2] / best[..., None], 0.0)
    dense = (1 - late_share) * scores[..., 0] + late_share * scores[..., 1]
    # The vector score's first-to-second gap over the candidates (-inf pads an empty list).
    ordered = -np.sort(-np.concatenate([dense, np.full(dense.shape[:-1] + (2,), -np.inf)], -1), -1)
    first = np.where(np.isfinite(ordered[..., 0]), ordered[..., 0], 0.0)
    vector_gap = first - np.where(np.isfinite(ordered[..., 1]), ordered[..., 1], first)
    w = gate(gap - vector_gap_scale * vector_gap, kw_low, kw_high, kw_gap, softness)
    return (1 - w[..., None]) * dense + w[..., None] * kwn


def gate(gap: np.ndarray, low: float, high: float, centre: float, softness: float = 0.03) -> np.ndarray:
    """A weight from ``low`` to ``high`` as a list's relative gap passes ``centre``."""
    return low + (high - low) / (1.0 + np.exp(-(gap - centre) / softness))


def relative_gap(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``1 − second / first`` for BM25 scores (0 when nothing matched)."""
    return np.where(first > 0, 1.0 - second / np.where(first > 0, first, 1.0), 0.0)


def head_boost(first_stage: np.ndarray, chunk_kw: np.ndarray, head: np.ndarray,
               low: float, high: float, centre: float, softness: float = 0.03) -> np.ndarray:
    """Second stage: add ``β·chunk BM25 / best chunk BM25`` to the head's scores (``head``:
    bool, the candidates whose chunks were scored), ``β`` gated by how far the best passage
    pulls ahead of the second-best document's."""
    masked = np.where(head, chunk_kw, 0.0)
    # Two zeros appended: fewer than two scored passages leave a second best of 0.
    padded = np.concatenate([masked, np.zeros(masked.shape[:-1] + (2,))], axis=-1)
    ordered = -np.sort(-padded, axis=-1)
    top1, top2 = ordered[..., 0], ordered[..., 1]
    beta = gate(relative_gap(top1, top2), low, high, centre, softness)
    norm = masked / np.where(top1 > 0, top1, 1.0)[..., None]
    return first_stage + beta[..., None] * norm
