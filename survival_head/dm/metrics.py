"""Binary DM metrics: Youden threshold, AUC with bootstrap CI, accuracy/sensitivity/specificity, ROC PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from hnc_core.io import atomic_path
from survival_head.evaluation.bootstrap import bootstrap_ci


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Probability threshold maximising sensitivity + specificity - 1 (0.5 if one class only)."""
    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    j = int(np.argmax(tpr - fpr))
    return float(min(max(thr[j], 0.0), 1.0))


def _auc(y, p) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def _auc_difference(y, p_a, p_b) -> float:
    return _auc(y, p_a) - _auc(y, p_b)


def auc_difference_ci(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, n_boot: int = 1000, *,
                      alpha: float = 0.05, seed: int = 0) -> dict:
    """AUC(p_a) - AUC(p_b) on the same patients with a paired percentile bootstrap (1 - alpha) CI.

    Each resample draws patients once and scores both predictions on it (the two models' errors on one
    cohort are correlated); resamples with one class only are skipped. Returns
    ``{"estimate", "ci_low", "ci_high", "n_boot"}``."""
    y = np.asarray(y).astype(int)
    est, lo, hi = bootstrap_ci(_auc_difference, y, np.asarray(p_a, float), np.asarray(p_b, float),
                               n_boot=n_boot, alpha=alpha, seed=seed)
    return {"estimate": est, "ci_low": lo, "ci_high": hi, "n_boot": n_boot}


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0,
                   pred_class: np.ndarray | None = None) -> dict:
    """AUC (95% bootstrap CI), accuracy, sensitivity, specificity; counts.

    Classes are ``p >= threshold``, unless ``pred_class`` is given: the classes already predicted at each
    cross-validation fold's own training-fold Youden threshold (``threshold`` is then reported as
    ``"training_fold_youden"``; the 0.5-threshold numbers are kept under ``"at_0.5"`` for reference).
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, float)
    auc, lo, hi = bootstrap_ci(_auc, y, p, n_boot=n_boot, seed=seed) if len(np.unique(y)) == 2 else (
        float("nan"), float("nan"), float("nan"))
    out = {"n": int(len(y)), "n_positive": int((y == 1).sum()), "auc": auc, "auc_ci95": [lo, hi]}
    if pred_class is None:
        out.update(_class_metrics(y, (p >= threshold).astype(int)), threshold=float(threshold))
    else:
        out.update(_class_metrics(y, np.asarray(pred_class).astype(int)), threshold="training_fold_youden",
                   **{"at_0.5": _class_metrics(y, (p >= 0.5).astype(int))})
    return out


def _class_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    pos, neg = y == 1, y == 0
    return {"accuracy": float((pred == y).mean()) if len(y) else float("nan"),
            "sensitivity": float(pred[pos].mean()) if pos.any() else float("nan"),
            "specificity": float(1 - pred[neg].mean()) if neg.any() else float("nan")}


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "DM ROC") -> None:
    """ROC curves ``{label: (y, p)}`` into one PNG (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (y, p) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{label} (AUC {_auc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def fold_threshold_metrics(y, pred_class) -> dict:
    """Accuracy / sensitivity / specificity of the classes predicted at each fold's training-fold threshold."""
    y = np.asarray(y)
    return {"cv_fold_threshold": {
        "accuracy": float((pred_class == y).mean()),
        "sensitivity": float(pred_class[y == 1].mean()) if (y == 1).any() else float("nan"),
        "specificity": float(1 - pred_class[y == 0].mean()) if (y == 0).any() else float("nan")}}
