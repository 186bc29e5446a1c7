"""The recorded form of a hybrid fusion, checked where it is written and where it is read.

An encoder's ``ragkit.json`` and an index's settings both record how hybrid search should
fuse its dense and full-text rankings. Both are checked against this one schema, with no
search code imported, so the encoder and indexer packages can check what they write and the
search package (:mod:`ragkit.search.fusion`) builds its ``Fusion`` from the same result.
"""

from __future__ import annotations

from ragkit.errors import InvalidInputError

FUSION_METHODS = ("rrf", "weighted-rrf", "convex", "convex-zscore")
RRF_K = 60
KEYS = ("method", "dense_weight", "k")


def check_fusion_settings(settings: object, where: str, error: type[Exception] = InvalidInputError) -> dict:
    """``{"method", "dense_weight", "k"}`` from recorded settings; anything else is one ``error``
    naming ``where``. ``dense_weight`` is required except for equal-weight ``rrf``, so a
    record never silently means a weight nobody chose."""
    if not isinstance(settings, dict) or not set(settings) <= set(KEYS) or "method" not in settings:
        raise error(
            f"{where}: fusion settings must be an object with 'method' and optionally "
            f"'dense_weight' and 'k', got {settings!r}"
        )
    method, k = settings["method"], settings.get("k", RRF_K)
    if method not in FUSION_METHODS:
        raise error(f"{where}: unknown fusion {method!r}; choose from {', '.join(FUSION_METHODS)}")
    if method != "rrf" and "dense_weight" not in settings:
        raise error(f"{where}: fusion {method!r} needs a dense_weight")
    weight = settings.get("dense_weight", 0.5)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise error(f"{where}: dense_weight must be a number, got {weight!r}")
    if not 0.0 <= weight <= 1.0:
        raise error(f"{where}: dense_weight must be between 0 and 1, got {weight!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise error(f"{where}: k must be a positive integer, got {k!r}")
    return {"method": method, "dense_weight": float(weight), "k": k}
