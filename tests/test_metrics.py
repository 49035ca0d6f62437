"""Ranking metrics against values computed by hand."""

import math

import pytest

from searchkit.evaluation.metrics import mrr_at, ndcg_at, recall_at, score_run


def test_binary_relevance_by_hand():
    ranked = ["a", "x", "b", "y"]
    rels = {"a": 1, "b": 1, "c": 1}
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3) + 1/log2(4)
    ideal = 1 + 1 / math.log2(3) + 0.5
    assert ndcg_at(ranked, rels, 10) == pytest.approx(1.5 / ideal)
    assert recall_at(ranked, rels, 1) == pytest.approx(1 / 3)
    assert recall_at(ranked, rels, 10) == pytest.approx(2 / 3)
    assert mrr_at(["x", "y", "b"], rels, 10) == pytest.approx(1 / 3)
    assert mrr_at(["x", "y", "b"], rels, 2) == 0.0


def test_graded_relevance_uses_linear_gains_like_trec_eval():
    ranked = ["b", "a"]
    rels = {"a": 2, "b": 1}
    # DCG = 1/1 + 2/log2(3); ideal = 2/1 + 1/log2(3)
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at(ranked, rels, 10) == pytest.approx(expected)
    assert ndcg_at(["a", "b"], rels, 10) == pytest.approx(1.0)
    # The cutoff applies to the ideal ranking too: only its top 1 counts at @1.
    assert ndcg_at(ranked, rels, 1) == pytest.approx(1 / 2)


def test_zero_grade_is_not_relevant():
    rels = {"a": 0, "b": 1}
    assert mrr_at(["a", "b"], rels, 10) == pytest.approx(0.5)
    assert recall_at(["a"], rels, 1) == 0.0


def test_score_run_averages_judged_queries_only():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    run = {"q1": ["a", "b"], "q2": ["a", "b"], "q3": ["c"]}
    scores = score_run(run, qrels, [("recall", 1), ("mrr", 10), ("ndcg", 10)])
    assert scores["recall@1"] == pytest.approx(0.5)            # q3 has no relevant doc: skipped
    assert scores["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert scores["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert score_run({}, qrels, [("recall", 10)])["recall@10"] == 0.0   # missing run scores 0
