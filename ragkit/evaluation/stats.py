"""Paired statistics over per-query scores: is system A really better than B?"""

from __future__ import annotations

import warnings

import numpy as np


def paired_comparison(a: np.ndarray, b: np.ndarray, *, seed: int = 0, resamples: int = 10_000) -> dict:
    """Mean of ``a - b``, its 95 % bootstrap interval and a paired randomisation-test p-value.

    Both come from SciPy: ``bootstrap`` over queries (percentile interval) and
    ``permutation_test`` flipping each query's pair (two-sided).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    if np.allclose(diff, 0):
        return {"delta": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0}
    rng = np.random.default_rng(seed)
    interval = stats.bootstrap(
        (diff,), np.mean, n_resamples=resamples, confidence_level=0.95, method="percentile", random_state=rng
    ).confidence_interval
    test = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=resamples,
        alternative="two-sided",
        random_state=rng,
        vectorized=True,
    )
    return {
        "delta": float(diff.mean()),
        "ci95": [float(interval.low), float(interval.high)],
        "p_value": float(test.pvalue),
    }


def mean_interval(values: np.ndarray, *, seed: int = 0, resamples: int = 10_000) -> list[float]:
    """95 % bootstrap interval of a mean (for the chart's error bars)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if np.allclose(values, values[0]):
        return [float(values[0])] * 2
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=resamples,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def correlation_difference(
    a: np.ndarray, b: np.ndarray, gold: np.ndarray, *, seed: int = 0, resamples: int = 2_000
) -> dict:
    """Spearman(a, gold) − Spearman(b, gold), with a 95 % paired bootstrap interval over pairs.

    Both systems scored the same sentence pairs, so the pairs are resampled together: the
    interval then reflects which pairs are in the test set, not two independent samples.
    """
    from scipy import stats

    a, b, gold = (np.asarray(x, dtype=float) for x in (a, b, gold))

    def difference(x, y, g):
        return stats.spearmanr(x, g).statistic - stats.spearmanr(y, g).statistic

    if np.allclose(a, b):
        return {"delta": 0.0, "ci95": [0.0, 0.0]}
    with warnings.catch_warnings():
        # A resample of a handful of pairs can be constant: its correlation is undefined.
        warnings.simplefilter("ignore")
        delta = float(difference(a, b, gold))
        interval = stats.bootstrap(
            (a, b, gold),
            difference,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            confidence_level=0.95,
            method="percentile",
            random_state=np.random.default_rng(seed),
        ).confidence_interval
    bounds = [float(interval.low), float(interval.high)]
    # Too few pairs for an interval (undefined resamples): say so rather than print NaN.
    return {"delta": delta, "ci95": bounds if all(np.isfinite(bounds)) else None}
