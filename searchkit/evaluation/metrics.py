"""Ranking metrics over one query's ranked ids and its relevance judgments. Pure functions.

Conventions follow trec_eval / BEIR (pytrec_eval): gains are the judged relevance grades
(linear, not ``2^rel − 1``), the ideal ranking is every judged-relevant document sorted by
grade, and a document is relevant when its grade is above 0. A query with no relevant
document is not scored (the caller leaves it out of the mean).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: ``Σ gain_i / log2(i + 1)`` over ranks ``i`` from 1."""
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, 1))


def ndcg_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """nDCG@k: DCG of the top ``k`` divided by the DCG of the ideal top ``k``."""
    ideal = dcg(sorted((g for g in rels.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(rels.get(d, 0), 0) for d in ranked[:k]]) / ideal


def recall_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top ``k``."""
    relevant = {d for d, g in rels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k`` (0 if none)."""
    for rank, doc in enumerate(ranked[:k], 1):
        if rels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


METRICS = {"ndcg": ndcg_at, "recall": recall_at, "mrr": mrr_at}


def score_run(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
              measures: Sequence[tuple[str, int]]) -> dict[str, float]:
    """Mean of each ``(metric, k)`` over the judged queries, keyed ``"ndcg@10"`` and so on.

    Args:
        run: query id → ranked document ids (best first). A judged query missing from the run
            scores 0.
        qrels: query id → document id → relevance grade.
        measures: pairs such as ``("ndcg", 10)``; metric is one of ``ndcg``, ``recall``, ``mrr``.
    """
    judged = [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]
    out = {}
    for name, k in measures:
        fn = METRICS[name]
        total = sum(fn(run.get(q, ()), qrels[q], k) for q in judged)
        out[f"{name}@{k}"] = total / len(judged) if judged else 0.0
    return out
