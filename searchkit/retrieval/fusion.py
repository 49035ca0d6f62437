"""Query-adaptive fusion of the evidence a hybrid search gathers: document-vector cosine,
best late-chunk cosine and document BM25, each a top-``depth`` candidate list.

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
    tops = np.zeros((len(names), depth))
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
        best = np.sort(values)[::-1][:depth]
        tops[col, :] = floor
        tops[col, :len(best)] = best
        sizes[col] = len(found)
    return Evidence(ids, scores, present, tops, sizes)


# Feature sets tried by the study; "full" is the shipped one.
SPECS = ("fixed", "own", "full", "rank", "rankfull")


def features(scores: np.ndarray, present: np.ndarray, tops: np.ndarray, sizes: np.ndarray,
             spec: str = "full", names: Sequence[str] = LISTS) -> np.ndarray:
    """Per-candidate features ``(..., n, F)`` of the linear fusion model.

    Leading dimensions are batch dimensions (the study scores many queries at once; a search
    passes one). The base features are each list's score on a common footing: cosines as they
    are, BM25 divided by the list's best. ``fixed`` stops there (a fixed linear mix);
    ``own`` multiplies each base feature by its own list's confidence (the gap between its
    first and second and its first and last score); ``full`` by every list's confidence and
    by whether the lists agree on their first candidate. ``rank`` adds each candidate's
    reciprocal rank in each list (0 when missing), and ``rankfull`` does both.
    """
    width = scores.shape[-1]
    kw = [j for j, name in enumerate(names) if name.endswith("keyword")]
    top1 = tops[..., 0]
    base = scores.copy()
    norm = tops.copy()
    for j in kw:
        best = top1[..., j]
        safe = np.where(best > 0, best, 1.0)
        base[..., j] = np.where(best[..., None] > 0, scores[..., j] / safe[..., None], 0.0)
        norm[..., j, :] = np.where(best[..., None] > 0, tops[..., j, :] / safe[..., None], 0.0)
    parts = [base]
    if spec in ("rank", "rankfull"):
        masked = np.where(present, scores, -np.inf)
        ranks = np.argsort(np.argsort(-masked, axis=-2, kind="stable"), axis=-2, kind="stable")
        parts.append(np.where(present, 1.0 / (ranks + 1.0), 0.0))
    grid = np.concatenate(parts, -1)
    if spec in ("fixed", "rank"):
        return grid
    gap1 = norm[..., 0] - norm[..., 1]                       # (..., L)
    gap_last = norm[..., 0] - norm[..., -1]                  # (..., L)
    if spec == "own":
        return np.concatenate([grid, base * gap1[..., None, :], base * gap_last[..., None, :]], -1)
    first = np.argmax(np.where(present, scores, -np.inf), axis=-2)  # (..., L) row of each list's top
    has = sizes > 0
    agree = [((first[..., a] == first[..., b]) & has[..., a] & has[..., b]).astype(float)
             for a in range(width) for b in range(a + 1, width)]
    conf = np.concatenate([gap1, gap_last, np.stack(agree, -1)], -1)   # (..., K)
    inter = grid[..., :, None] * conf[..., None, None, :]                 # (..., n, G, K)
    return np.concatenate([grid, inter.reshape(*inter.shape[:-2], -1)], -1)


def gated(scores: np.ndarray, tops: np.ndarray, late_share: float, kw_low: float,
          kw_high: float, kw_gap: float, softness: float = 0.03) -> np.ndarray:
    """``(1 − w)·((1 − a)·document cosine + a·late cosine) + w·BM25 / best BM25``, where the
    keyword weight ``w`` rises from ``kw_low`` to ``kw_high`` as BM25's first document pulls
    ahead of its second (relative gap around ``kw_gap``)."""
    top = tops[..., 2, :2]
    best = np.where(top[..., 0] > 0, top[..., 0], 1.0)
    gap = np.where(top[..., 0] > 0, 1.0 - top[..., 1] / best, 0.0)
    w = kw_low + (kw_high - kw_low) / (1.0 + np.exp(-(gap - kw_gap) / softness))
    kwn = np.where(top[..., :1] > 0, scores[..., 2] / best[..., None], 0.0)
    dense = (1 - late_share) * scores[..., 0] + late_share * scores[..., 1]
    return (1 - w[..., None]) * dense + w[..., None] * kwn
