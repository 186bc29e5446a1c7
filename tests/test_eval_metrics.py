"""Metrics against hand computation, and the paired statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragkit.evaluation.metrics import mean_metrics, per_query
from ragkit.evaluation.stats import correlation_difference, paired_comparison

QRELS = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 2, "d4": 1}, "q3": {"d9": 1}}
RUN = {
    "q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7},  # relevant at ranks 1 and 3
    "q2": {"d5": 0.9, "d4": 0.8, "d2": 0.1},  # grade 1 at rank 2, grade 2 at rank 3
    # q3 is missing from the run: it must count as zero, not vanish from the mean
}


def test_metrics_match_hand_computation() -> None:
    rows = per_query(QRELS, RUN)
    # q1: DCG = 1/log2(2) + 1/log2(4); IDCG = 1 + 1/log2(3)
    assert rows["q1"]["ndcg@10"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert rows["q1"]["map@100"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert rows["q1"]["mrr@10"] == 1.0 and rows["q1"]["recall@10"] == 1.0
    # q2 (graded, linear gain as trec_eval): DCG = 1/log2(3) + 2/log2(4); IDCG = 2 + 1/log2(3)
    assert rows["q2"]["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0) / (2 + 1 / math.log2(3)))
    assert rows["q2"]["mrr@10"] == pytest.approx(0.5)
    assert rows["q3"] == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "map@100": 0.0, "mrr@10": 0.0}
    means = mean_metrics(rows)
    assert means["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_mrr_is_cut_at_ten() -> None:
    run = {"q3": {f"x{i}": 1 - i / 100 for i in range(10)} | {"d9": 0.5}}
    assert per_query({"q3": {"d9": 1}}, run)["q3"]["mrr@10"] == 0.0
    assert per_query({"q3": {"d9": 1}}, run)["q3"]["recall@100"] == 1.0


def test_paired_comparison() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 200)
    same = paired_comparison(base, base.copy())
    assert same == {"delta": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0}
    better = paired_comparison(base + 0.05 + rng.normal(0, 0.05, 200), base)
    assert better["p_value"] < 0.01 and 0 < better["ci95"][0] < better["delta"] < better["ci95"][1]
    noise = paired_comparison(base + rng.normal(0, 0.05, 200), base)
    assert noise["p_value"] > 0.05 and noise["ci95"][0] < 0 < noise["ci95"][1]
    # seeded: the same inputs give the same interval
    assert paired_comparison(base + 0.05, base, seed=3) == paired_comparison(base + 0.05, base, seed=3)


def test_correlation_difference() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 300)
    close = gold + rng.normal(0, 1.0, 300)  # Spearman ≈ 0.8
    far = gold + rng.normal(0, 4.0, 300)  # Spearman ≈ 0.35
    result = correlation_difference(close, far, gold)
    expected = spearmanr(close, gold).statistic - spearmanr(far, gold).statistic
    assert result["delta"] == pytest.approx(expected)
    assert 0 < result["ci95"][0] < result["delta"] < result["ci95"][1]
    reverse = correlation_difference(far, close, gold)
    assert reverse["ci95"][1] < 0
    twin = close + rng.normal(0, 0.01, 300)  # nearly the same system: the interval spans zero
    assert (
        correlation_difference(twin, close, gold)["ci95"][0]
        < 0
        < correlation_difference(twin, close, gold)["ci95"][1]
    )
    assert correlation_difference(close, close.copy(), gold) == {"delta": 0.0, "ci95": [0.0, 0.0]}


def test_a_document_with_the_query_s_own_id_is_dropped_unless_kept(tmp_path):
    from conftest import write_beir
    from ragkit.evaluation.retrieval import evaluate_retrieval

    # Query "q1" is also document "q1" (as in Quora): it matches itself best.
    corpus = {
        "q1": ("", "how do cats sleep so much"),
        "d1": ("", "cats sleep sixteen hours a day, mostly in the afternoon"),
        "d2": ("", "the stock market fell"),
    }
    folder = write_beir(tmp_path / "set", corpus, {"q1": "how do cats sleep so much"}, [("q1", "d1", 1)])
    dropped = evaluate_retrieval(folder, systems="bm25")
    kept = evaluate_retrieval(folder, systems="bm25", keep_identical_ids=True)
    assert dropped["identical_ids_dropped"] and not kept["identical_ids_dropped"]
    assert dropped["systems"]["bm25"]["mrr@10"] == 1.0  # d1 first once q1 itself is out
    assert kept["systems"]["bm25"]["mrr@10"] == 0.5
