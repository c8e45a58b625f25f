"""Percentile bootstrap over patients."""

from __future__ import annotations

from typing import Callable

import numpy as np


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Return ``(estimate, low, high)``: the statistic on all patients and its (1-alpha) percentile CI.

    ``arrays`` are indexed along axis 0 by patient and resampled together with replacement.
    Resamples on which the statistic is undefined (raises, or returns NaN: e.g. no events, one class)
    are skipped; if fewer than half succeed the interval is (nan, nan).
    """
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all arrays must have the same number of patients")
    estimate = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            v = float(statistic(*(a[idx] for a in arrays)))
        except (ValueError, ZeroDivisionError):
            continue
        if np.isfinite(v):
            values.append(v)
    if len(values) < n_boot / 2:
        return estimate, float("nan"), float("nan")
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return estimate, float(lo), float(hi)
