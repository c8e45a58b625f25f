"""Survival metrics: Harrell's C with bootstrap CI, Uno's C, integrated Brier score, log-rank test.

``risk`` is always "higher = earlier event"; outcomes are scikit-survival structured arrays
``(event: bool, time: float days)``.
"""

from __future__ import annotations

import numpy as np
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, integrated_brier_score

from survival_head.evaluation.bootstrap import bootstrap_ci


def _unpack(y) -> tuple[np.ndarray, np.ndarray]:
    n = y.dtype.names
    return np.asarray(y[n[0]], bool), np.asarray(y[n[1]], float)


def harrell_c(y, risk) -> float:
    """Harrell's C-index (sksurv ``concordance_index_censored``)."""
    event, time = _unpack(y)
    if not event.any():
        return float("nan")
    return float(concordance_index_censored(event, time, np.asarray(risk, float))[0])


def harrell_c_ci(y, risk, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Harrell's C with a percentile bootstrap (1 - alpha) CI over patients."""
    est, lo, hi = bootstrap_ci(harrell_c, y, np.asarray(risk, float), n_boot=n_boot, alpha=alpha, seed=seed)
    return {"estimate": est, "ci_low": lo, "ci_high": hi, "n_boot": n_boot}


def harrell_c_difference_ci(y, risk_a, risk_b, n_boot: int = 1000, *, alpha: float = 0.05, seed: int = 0) -> dict:
    """C(risk_a) - C(risk_b) on the same patients with a paired percentile bootstrap (1 - alpha) CI.

    Each resample draws patients once and scores both risks on it, so the CI accounts for the
    correlation of two models evaluated on one cohort. Resamples without an event or without a
    comparable pair (tiny test parts) are skipped; ``n_boot`` in the result counts the ones used.
    ``alpha`` and ``seed`` are keyword-only (a seed passed positionally once became ``alpha``).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    event, time = _unpack(y)
    a, b = np.asarray(risk_a, float), np.asarray(risk_b, float)
    est = harrell_c(y, a) - harrell_c(y, b)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(a), len(a))
        if not event[i].any():
            continue
        yi = y[i]
        try:
            d = harrell_c(yi, a[i]) - harrell_c(yi, b[i])
        except NoComparablePairException:
            continue
        if np.isfinite(d):
            diffs.append(d)
    lo, hi = (np.quantile(diffs, [alpha / 2, 1 - alpha / 2]) if diffs else (np.nan, np.nan))
    return {"estimate": float(est), "ci_low": float(lo), "ci_high": float(hi), "n_boot": len(diffs)}


def uno_c(y_train, y_test, risk, tau: float | None = None) -> float:
    """Uno's IPCW C-index; censoring distribution from ``y_train``; ``tau`` defaults to a safe horizon."""
    _, t_test = _unpack(y_test)
    _, t_train = _unpack(y_train)
    if tau is None:
        tau = float(min(np.percentile(t_test, 90), t_train.max() - 1e-6))
    try:
        return float(concordance_index_ipcw(y_train, y_test, np.asarray(risk, float), tau=tau)[0])
    except ValueError:
        return float("nan")


def integrated_brier(y_train, y_test, risk_train, risk_test, n_times: int = 50) -> dict:
    """Integrated Brier score of survival curves from a Cox-Breslow calibration of the risk.

    A one-covariate Cox model on ``risk_train`` gives the baseline hazard; its survival functions
    for ``risk_test`` are scored between the 10th and 80th percentile of the test follow-up (kept
    inside the training follow-up). Returns ``{"ibs", "times_days": [first, last]}`` (NaN if undefined).
    """
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    _, t_test = _unpack(y_test)
    _, t_train = _unpack(y_train)
    lo = max(np.percentile(t_test, 10), t_test.min() + 1e-6)
    hi = min(np.percentile(t_test, 80), t_train.max() - 1e-6, t_test.max() - 1e-6)
    if not hi > lo:
        return {"ibs": float("nan"), "times_days": []}
    times = np.linspace(lo, hi, n_times)
    r_tr = np.asarray(risk_train, float)[:, None]
    mu, sd = r_tr.mean(), r_tr.std() + 1e-12
    cox = CoxPHSurvivalAnalysis(alpha=1e-4, ties="efron").fit((r_tr - mu) / sd, y_train)
    fns = cox.predict_survival_function((np.asarray(risk_test, float)[:, None] - mu) / sd)
    surv = np.stack([fn(times) for fn in fns])
    try:
        ibs = float(integrated_brier_score(y_train, y_test, surv, times))
    except ValueError:
        ibs = float("nan")
    return {"ibs": ibs, "times_days": [float(times[0]), float(times[-1])]}


def risk_groups(risk, thresholds) -> np.ndarray:
    """Group index per patient: 0 = lowest risk, len(thresholds) = highest."""
    return np.searchsorted(np.sort(np.asarray(thresholds, float)), np.asarray(risk, float), side="right")


def logrank(y, groups) -> dict:
    """Log-rank test across groups (sksurv ``compare_survival``)."""
    from sksurv.compare import compare_survival

    groups = np.asarray(groups)
    if len(np.unique(groups)) < 2:
        return {"chisq": float("nan"), "p_value": float("nan")}
    chisq, p = compare_survival(y, groups)
    return {"chisq": float(chisq), "p_value": float(p)}
