"""Kaplan-Meier curves of predicted-risk groups (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hnc_core.io import atomic_path
from survival_head.evaluation.survival_metrics import logrank, risk_groups


def km_plot(y, risk, path: str | Path, thresholds=None, title: str = "RFS by predicted risk") -> dict:
    """Plot KM curves of risk groups (default: split at the median risk) and the log-rank p-value.

    y : sksurv structured array (event, time days); risk : (n,), higher = earlier relapse.
    Returns ``{"thresholds", "group_sizes", "chisq", "p_value"}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sksurv.nonparametric import kaplan_meier_estimator

    risk = np.asarray(risk, float)
    if thresholds is None:
        thresholds = [float(np.median(risk))]
    groups = risk_groups(risk, thresholds)
    test = logrank(y, groups)
    names = y.dtype.names
    event, time = np.asarray(y[names[0]], bool), np.asarray(y[names[1]], float)
    labels = ["low risk", "high risk"] if len(thresholds) == 1 else [f"group {g}" for g in range(len(thresholds) + 1)]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    sizes = []
    for g in range(len(thresholds) + 1):
        m = groups == g
        sizes.append(int(m.sum()))
        if m.sum() == 0:
            continue
        t, s = kaplan_meier_estimator(event[m], time[m])
        ax.step(t, s, where="post", label=f"{labels[g]} (n={m.sum()}, events={event[m].sum()})")
    ax.set_xlabel("time (days)")
    ax.set_ylabel("recurrence-free survival")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title}\nlog-rank p = {test['p_value']:.3g}")
    ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return {"thresholds": [float(t) for t in thresholds], "group_sizes": sizes, **test}
