"""Fusion functions of hybrid search, by hand and on constructed rankings."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ragkit.errors import InvalidInputError
from ragkit.search.fusion import DEFAULT_FUSION, Fusion, convex_combination, reciprocal_rank_fusion


def test_weighted_rrf_and_convex_by_hand():
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    lexical = [("c", 12.0), ("d", 6.0), ("a", 2.0)]
    weighted = dict(reciprocal_rank_fusion([dense, lexical], k=60, weights=[0.25, 0.75]))
    assert weighted["a"] == pytest.approx(0.25 / 61 + 0.75 / 63)
    assert weighted["d"] == pytest.approx(0.75 / 62)
    convex = dict(convex_combination(dense, lexical, 0.3))
    # min-max: dense a=1, b=0.5, c=0; lexical c=1, d=0.4, a=0
    assert convex["a"] == pytest.approx(0.3 * 1.0)
    assert convex["b"] == pytest.approx(0.3 * 0.5)
    assert convex["c"] == pytest.approx(0.7 * 1.0)
    assert convex["d"] == pytest.approx(0.7 * 0.4)
    assert [i for i, _ in Fusion("convex", 0.3).fuse(dense, lexical)] == ["c", "a", "d", "b"]
    assert [i for i, _ in Fusion("convex", 1.0).fuse(dense, lexical)][:3] == ["a", "b", "c"]
    assert [i for i, _ in Fusion("convex", 0.0).fuse(dense, lexical)][:3] == ["c", "d", "a"]


def test_z_score_convex_by_hand():
    dense = [("a", 0.9), ("b", 0.6), ("c", 0.3)]  # mean 0.6, std sqrt(0.06)
    lexical = [("c", 9.0), ("d", 3.0)]  # mean 6, std 3
    fused = dict(convex_combination(dense, lexical, 0.4, "z-score"))
    sd = 0.06**0.5
    assert fused["a"] == pytest.approx(0.4 * 0.3 / sd + 0.6 * -1.0)  # absent: the list's lowest z
    assert fused["b"] == pytest.approx(0.4 * 0.0 + 0.6 * -1.0)
    assert fused["c"] == pytest.approx(0.4 * -0.3 / sd + 0.6 * 1.0)
    assert fused["d"] == pytest.approx(0.4 * -0.3 / sd + 0.6 * -1.0)
    assert [i for i, _ in Fusion("convex-zscore", 0.4).fuse(dense, lexical)] == ["c", "a", "b", "d"]
    recorded = Fusion.from_settings({"method": "convex-zscore", "dense_weight": 0.4}, "test")
    assert recorded == Fusion("convex-zscore", 0.4)


def test_one_outlier_sets_the_scale_of_a_min_max_list_not_of_a_z_scored_one():
    """A lexical list whose top score is far ahead squashes the rest towards 0 under min-max,
    so the dense list decides among them; z-scores keep the lexical runner-up's lead."""
    dense = [("x", 0.80), ("y", 0.77), ("top", 0.5)] + [(f"n{i}", 0.7 - 0.005 * i) for i in range(97)]
    lexical = [("top", 100.0), ("y", 12.0), ("x", 10.0)] + [(f"n{i}", 9.0 - 0.05 * i) for i in range(97)]
    min_max = [i for i, _ in Fusion("convex", 0.5).fuse(dense, lexical)]
    z_scored = [i for i, _ in Fusion("convex-zscore", 0.5).fuse(dense, lexical)]
    assert min_max.index("x") < min_max.index("y")
    assert z_scored.index("y") < z_scored.index("x")


def test_ties_never_depend_on_ids():
    dense = [(10, 0.9), (20, 0.8)]
    lexical = [(20, 5.0), (10, 4.0)]
    for method in ("rrf", "weighted-rrf", "convex", "convex-zscore"):
        fused = Fusion(method, 0.5).fuse(dense, lexical)
        renamed = Fusion(method, 0.5).fuse([(2, 0.9), (1, 0.8)], [(1, 5.0), (2, 4.0)])
        assert [{10: 2, 20: 1}[i] for i, _ in fused] == [i for i, _ in renamed]


def test_bad_fusion_settings_are_clear_errors():
    with pytest.raises(InvalidInputError, match="unknown fusion"):
        Fusion("max")
    with pytest.raises(InvalidInputError, match="between 0 and 1"):
        Fusion("convex", 1.5)


def _ndcg_at_10(ranking: list, relevant: set) -> float:
    gains = [1.0 / np.log2(i + 2) for i, (item, _) in enumerate(ranking[:10]) if item in relevant]
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(relevant), 10)))
    return sum(gains) / ideal


def _random_ranking_loss(fusion: Fusion, rng: random.Random, queries: int = 200) -> float:
    """Mean nDCG@10 lost when a good lexical ranking is fused with a random dense one."""
    losses = []
    for _ in range(queries):
        docs = list(range(100))
        relevant = set(rng.sample(docs, 2))
        # The good ranking: relevant documents near the top, scores falling off as BM25's do;
        # the random one: a shuffled list with uninformative scores.
        order = sorted(docs, key=lambda d: (d not in relevant) * 1.0 + rng.random() * 0.8)
        good = [(d, 1.0 - 0.01 * i + (0.2 if d in relevant else 0.0)) for i, d in enumerate(order[:50])]
        good.sort(key=lambda pair: -pair[1])
        noise = [(d, 0.5 - 0.001 * i) for i, d in enumerate(rng.sample(docs, 50))]
        losses.append(_ndcg_at_10(good, relevant) - _ndcg_at_10(fusion.fuse(noise, good), relevant))
    return float(np.mean(losses))


def test_the_default_fusion_survives_a_random_dense_ranking():
    """Fused with a random dense ranking, the default keeps most of the good lexical one:
    it loses at most 0.3 nDCG@10 of it, where equal-weight RRF and an even convex mix lose
    over half. Only the dense side is guarded: the default is the fusion of an encoder that
    states none, whose quality is unknown, so it leans on the lexical half; no fixed fusion
    survives noise on the side it trusts more."""
    assert DEFAULT_FUSION.method == "convex" and DEFAULT_FUSION.dense_weight < 0.5
    loss = _random_ranking_loss(DEFAULT_FUSION, random.Random(0))
    assert loss <= 0.3
    assert _random_ranking_loss(Fusion("convex", 0.5), random.Random(0)) > 0.5 > loss
    assert _random_ranking_loss(Fusion("rrf"), random.Random(0)) > 0.5


@pytest.mark.parametrize("allowed", [None, list(range(1, 200, 3))])
def test_bm25_top_orders_ties_by_text_as_the_full_ordering_does(allowed):
    """The score-only top with ties settled by text equals ordering every match by (score,
    text), at every depth, including ties inside the top and across its cut."""
    from ragkit.search.lexical import fts_query, lexical_ranking, text_table

    words = ["alpha", "beta", "gamma", "delta", "omega"]
    rng = random.Random(3)
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(200)]  # many duplicates
    db = text_table(texts)
    full_sql = (
        "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?"
        + (" AND rowid IN (SELECT value FROM json_each(?))" if allowed else "")
        + " ORDER BY bm25(chunks_fts), text LIMIT ?"
    )
    import json

    tie_cases = 0
    for query in ("alpha", "beta gamma", "omega delta alpha"):
        for depth in (1, 2, 5, 17, 60, 300):
            params = [fts_query(query), *([json.dumps(allowed)] if allowed else []), depth]
            expected = [(int(r), -float(s)) for r, s in db.execute(full_sql, params)]
            ranked = lexical_ranking(db, query, depth, allowed)
            assert [texts[i - 1] for i, _ in ranked] == [texts[i - 1] for i, _ in expected]
            assert [s for _, s in ranked] == [s for _, s in expected]
            tie_cases += len({s for _, s in expected}) < len(expected)
    assert tie_cases > 5
