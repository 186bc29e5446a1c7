"""Reciprocal rank fusion, shared by hybrid search and its evaluation."""

from __future__ import annotations

from collections.abc import Hashable

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: list[list[tuple[Hashable, float]]], k: int = RRF_K
) -> list[tuple[Hashable, float]]:
    """Cormack et al.'s RRF: each list adds 1/(k + rank); robust to incomparable scores."""
    fused: dict = {}
    for ranking in rankings:
        for rank, (item, _) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda pair: (-pair[1], str(pair[0])))
