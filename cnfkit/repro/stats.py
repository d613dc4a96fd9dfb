"""The noise behind a claim: paired bootstrap over test items and the binomial interval of an accuracy.

A claim compares two numbers measured on the same test items (images, crops); their difference is
tested against its own sampling noise, never against a fixed gap.  Every random draw comes from a
NumPy generator seeded by the caller, so the same inputs give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "binomial_difference",
    "json_safe",
    "paired_bootstrap",
    "paired_bootstrap_statistic",
]

BOOTSTRAP_RESAMPLES = 2000


def _finite_pairs(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"paired values need two 1-D sequences of one length, got {x.shape} and {y.shape}")
    if x.size < 2:
        raise ValueError(f"a bootstrap needs at least 2 paired items, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired values contain NaN or Inf: a non-finite score cannot be averaged")
    return x, y


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, Any]:
    """Mean of ``a - b`` over paired items, with its bootstrap standard error and 95% percentile interval.

    Items are resampled with replacement (the same items for both), ``resamples`` times.  Returns
    ``mean_a``, ``mean_b``, ``difference`` (mean of a - mean of b), ``se``, ``ci95``, ``z`` (difference / se;
    +-inf when every resample agrees), ``n`` and ``statistic`` (what the spread is, in words)."""
    x, y = _finite_pairs(a, b)
    return paired_bootstrap_statistic(
        lambda idx: x[idx].mean(axis=-1), lambda idx: y[idx].mean(axis=-1), x.size, seed, resamples
    )


def paired_bootstrap_statistic(
    stat_a: Callable[[np.ndarray], np.ndarray],
    stat_b: Callable[[np.ndarray], np.ndarray],
    n: int,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """:func:`paired_bootstrap` for any statistic of the items: ``stat(idx)`` maps an index array (``[n]``, or
    ``[resamples, n]`` for all resamples at once) to the statistic (``[]`` or ``[resamples]``); pooled statistics
    such as a max F-score over images are resampled by image this way."""
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 paired items, got {n}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a standard error, got {resamples}")
    full = np.arange(n)
    ma, mb = float(stat_a(full)), float(stat_b(full))
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    diffs = np.asarray(stat_a(idx), dtype=np.float64) - np.asarray(stat_b(idx), dtype=np.float64)
    d = ma - mb
    se = float(diffs.std(ddof=1))
    if se <= 1e-12 * max(abs(ma), abs(mb), 1.0):  # rounding of identical differences: no spread
        se = 0.0
    z = d / se if se > 0 else (math.copysign(math.inf, d) if d else 0.0)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {
        "mean_a": ma,
        "mean_b": mb,
        "difference": d,
        "se": se,
        "ci95": [float(lo), float(hi)],
        "z": z,
        "n": n,
        "statistic": f"paired bootstrap over {n} test items ({resamples} resamples, seed {seed})",
    }


def binomial_difference(acc: float, reference: float, n: int, n_reference: int | None = None) -> dict[str, Any]:
    """Difference of two accuracies measured on ``n`` and ``n_reference`` (default ``n``) independent test items,
    with the standard error of the difference of two binomial proportions."""
    for name, p in (("acc", acc), ("reference", reference)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} must be an accuracy in [0, 1], got {p}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    m = n if n_reference is None else n_reference
    se = math.sqrt(acc * (1 - acc) / n + reference * (1 - reference) / m)
    d = acc - reference
    return {
        "mean_a": acc,
        "mean_b": reference,
        "difference": d,
        "se": se,
        "ci95": [d - 1.96 * se, d + 1.96 * se],
        "z": d / se if se > 0 else (math.copysign(math.inf, d) if d else 0.0),
        "n": n,
        "statistic": f"binomial SE of the difference of two accuracies (n={n} and {m})",
    }


def json_safe(st: dict[str, Any]) -> dict[str, Any]:
    """A statistic for a JSON file: a z of +-inf (every resample agrees exactly) becomes the string "inf" / "-inf"
    (strict JSON has no infinity; ``float()`` reads the string back)."""
    return {k: (str(v) if isinstance(v, float) and math.isinf(v) else v) for k, v in st.items()}
