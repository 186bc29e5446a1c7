"""Fusing a dense and a lexical ranking: one definition for hybrid search and its evaluation.

Four fusion functions, as compared by Bruch et al. (2023, "An Analysis of Fusion Functions
for Hybrid Retrieval"):

- ``rrf``: Cormack et al.'s reciprocal rank fusion, each list adds 1/(k + rank). Robust to
  incomparable scores, but blind to them: a weak ranker's top guesses weigh as much as a
  strong ranker's, which is how equal-weight RRF pulls a strong ranking down.
- ``weighted-rrf``: the same with a weight on each list.
- ``convex``: ``w * dense + (1 - w) * lexical`` over min-max normalised scores, a document
  missing from a list scoring 0 there. Uses how far ahead each ranker is, not only its order.
- ``convex-zscore``: the same combination over z-scores (each list minus its mean, over its
  standard deviation), a missing document taking its list's lowest z-score. One outlier score
  sets a min-max list's whole scale; it moves a z-scored list's mean and spread much less.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ragkit.fusion_settings import RRF_K, check_fusion_settings

HYBRID_DEPTH = 100
"""How deep each ranking goes before fusion (at least ``k``). One depth for every ``k`` up to
it, so the first ten hits of a search for 10 and of a search for 100 are the same."""

Ranking = list[tuple[Hashable, float]]


def reciprocal_rank_fusion(
    rankings: list[Ranking], k: int = RRF_K, weights: list[float] | None = None
) -> Ranking:
    """RRF over rankings in order (scores are ignored); ties broken by id for stable output."""
    weights = weights or [1.0] * len(rankings)
    fused: dict = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (item, _) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda pair: (-pair[1], str(pair[0])))


def _min_max(ranking: Ranking) -> tuple[dict, float]:
    if not ranking:
        return {}, 0.0
    scores = [s for _, s in ranking]
    low, high = min(scores), max(scores)
    span = high - low
    return {item: ((s - low) / span if span > 0 else 1.0) for item, s in ranking}, 0.0


def _z_score(ranking: Ranking) -> tuple[dict, float]:
    if not ranking:
        return {}, 0.0
    scores = [s for _, s in ranking]
    mean = sum(scores) / len(scores)
    spread = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    z = {item: ((s - mean) / spread if spread > 0 else 0.0) for item, s in ranking}
    return z, min(z.values())


NORMALISERS = {"min-max": _min_max, "z-score": _z_score}
CONVEX_NORMALISATION = {"convex": "min-max", "convex-zscore": "z-score"}
"""Each convex fusion method's normalisation."""


def convex_combination(
    dense: Ranking, lexical: Ranking, dense_weight: float, normalisation: str = "min-max"
) -> Ranking:
    """``w * norm(dense) + (1 - w) * norm(lexical)``; a document absent from a list scores 0
    there under min-max, the list's lowest z-score under z-score."""
    normalise = NORMALISERS[normalisation]
    (a, floor_a), (b, floor_b) = normalise(dense), normalise(lexical)
    fused = {
        item: dense_weight * a.get(item, floor_a) + (1 - dense_weight) * b.get(item, floor_b)
        for item in {*a, *b}
    }
    return sorted(fused.items(), key=lambda pair: (-pair[1], str(pair[0])))


@dataclass(frozen=True)
class Fusion:
    """How hybrid search combines its two rankings."""

    method: str = "convex"
    dense_weight: float = 0.5
    """Share of the dense ranking: the convex weight, or the dense list's RRF weight (the
    lexical list gets ``1 - dense_weight``). Equal-weight RRF ignores it."""
    k: int = RRF_K

    def __post_init__(self) -> None:
        check_fusion_settings(self.settings(), "Fusion")

    def fuse(self, dense: Ranking, lexical: Ranking) -> Ranking:
        """Fused ranking; ties go to the better dense rank, then lexical rank, never to ids,
        so the order does not depend on how a store happened to number its chunks."""
        if self.method in CONVEX_NORMALISATION:
            normalisation = CONVEX_NORMALISATION[self.method]
            fused = convex_combination(dense, lexical, self.dense_weight, normalisation)
        else:
            weights = None if self.method == "rrf" else [self.dense_weight, 1 - self.dense_weight]
            fused = reciprocal_rank_fusion([dense, lexical], self.k, weights)
        last = len(dense) + len(lexical)
        dense_rank = {item: rank for rank, (item, _) in enumerate(dense)}
        lexical_rank = {item: rank for rank, (item, _) in enumerate(lexical)}
        return sorted(
            fused,
            key=lambda pair: (-pair[1], dense_rank.get(pair[0], last), lexical_rank.get(pair[0], last)),
        )

    def settings(self) -> dict:
        """The fields that decide the fused order, as JSON: what an index or an encoder's
        ``ragkit.json`` records, read back by :meth:`from_settings`."""
        return {"method": self.method, "dense_weight": self.dense_weight, "k": self.k}

    @classmethod
    def from_settings(cls, settings: object, where: str) -> Fusion:
        """Fusion from recorded settings (:mod:`ragkit.fusion_settings`); anything malformed is
        one error naming ``where``."""
        return cls(**check_fusion_settings(settings, where))

    def describe(self) -> dict:
        out = {"fusion": self.method, "depth": HYBRID_DEPTH}
        if self.method not in CONVEX_NORMALISATION:
            out["k"] = self.k
        if self.method != "rrf":
            out["dense_weight"] = self.dense_weight
        return out


DEFAULT_FUSION = Fusion("convex", 0.4)
"""The fusion of an encoder that states none of its own (``fusion`` in its ``ragkit.json``).
It leans on the lexical ranking: an encoder of unknown quality may be the weaker half, and
fused with a random dense ranking this weight keeps most of a good lexical one, where an even
mix does not (tests/test_fusion.py). The shipped encoder states the same weight, chosen for it
on two dev sets (EVAL.md)."""


def encoder_fusion(encoder) -> Fusion:
    """The fusion an encoder states in its config, else :data:`DEFAULT_FUSION`."""
    stated = getattr(getattr(encoder, "config", None), "fusion", None)
    if stated is None:
        return DEFAULT_FUSION
    fingerprint = getattr(encoder, "fingerprint", "?")
    return Fusion.from_settings(stated, f"'fusion' in the ragkit.json of encoder {fingerprint}")


def hybrid_depth(k: int) -> int:
    return max(k, HYBRID_DEPTH)
