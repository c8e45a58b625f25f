"""Downstream survival model on the 128-d fused features: ridge-penalised Cox (scikit-survival).

Why a penalised Cox model: each fold trains on ~80 % of a few hundred patients with a few dozen
events, and the 128 fused features are strongly correlated (ReLU outputs of one MLP). An L2 penalty
keeps all features with shrunken, stable coefficients; the model stays linear in the features like
the network's own Cox head, is proportional-hazards (so survival curves for the Brier score follow
from a Breslow baseline) and is exactly reproducible from a few numbers stored as JSON (no pickle).
Gradient-boosted survival overfits a few dozen events and cannot be stored without pickle.
The penalty is chosen per fold by an inner cross-validation of Harrell's C on the training part.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored


class PenalizedCoxRisk(BaseEstimator):
    """Standardise features, fit an L2-penalised Cox model; ``predict`` returns the linear risk.

    Parameters
    ----------
    alphas : candidate ridge penalties; one is chosen by inner CV (a single value skips the CV).
    inner_folds : folds of the inner CV (stratified by event).
    random_state : seed of the inner split.

    Fitted attributes: ``alpha_``, ``mean_``, ``scale_``, ``coef_`` (n_features,), ``inner_cindex_``;
    ``blend_`` (dict or None) when :func:`blend_with_head` folded a network head into ``coef_``.
    """

    def __init__(self, alphas: Sequence[float] = (1.0, 10.0, 100.0, 1000.0), inner_folds: int = 3,
                 random_state: int = 0):
        self.alphas = alphas
        self.inner_folds = inner_folds
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "PenalizedCoxRisk":
        """X : (n, d) features; y : sksurv structured array (event, time days)."""
        X = np.asarray(X, float)
        event, time = _unpack(y)
        self.inner_cindex_ = {float(a): float("nan") for a in self.alphas}
        alphas = list(self.alphas)
        if len(alphas) > 1 and event.sum() >= 2 * self.inner_folds:
            for a in alphas:
                self.inner_cindex_[float(a)] = self._inner_cv(X, event, time, a)
            best = max(alphas, key=lambda a: np.nan_to_num(self.inner_cindex_[float(a)], nan=-1))
        else:
            best = alphas[-1] if len(alphas) > 1 else alphas[0]
        self.alpha_ = float(best)
        self.mean_, self.scale_, self.coef_ = _fit_cox(X, event, time, self.alpha_)
        self.blend_ = None
        return self

    def _inner_cv(self, X, event, time, alpha) -> float:
        cv = StratifiedKFold(self.inner_folds, shuffle=True, random_state=self.random_state)
        scores = []
        for tr, va in cv.split(X, event):
            if event[va].sum() == 0:
                continue
            m, s, c = _fit_cox(X[tr], event[tr], time[tr], alpha)
            scores.append(concordance_index_censored(event[va], time[va], ((X[va] - m) / s) @ c)[0])
        return float(np.mean(scores)) if scores else float("nan")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Risk (n,): higher = earlier relapse."""
        check_is_fitted(self, "coef_")
        return ((np.asarray(X, float) - self.mean_) / self.scale_) @ self.coef_

    def to_dict(self) -> dict:
        check_is_fitted(self, "coef_")
        return {"type": "PenalizedCoxRisk", "params": {"alphas": list(self.alphas), "inner_folds": self.inner_folds,
                "random_state": self.random_state}, "alpha": self.alpha_, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "coef": self.coef_.tolist(),
                "inner_cindex": {str(k): v for k, v in self.inner_cindex_.items()},
                "blend": getattr(self, "blend_", None)}

    @classmethod
    def from_dict(cls, d: dict) -> "PenalizedCoxRisk":
        m = cls(**{**d["params"], "alphas": tuple(d["params"]["alphas"])})
        m.alpha_ = float(d["alpha"])
        m.mean_, m.scale_, m.coef_ = (np.asarray(d[k], float) for k in ("mean", "scale", "coef"))
        m.inner_cindex_ = {float(k): v for k, v in d.get("inner_cindex", {}).items()}
        m.blend_ = d.get("blend")
        return m


def blend_with_head(model: PenalizedCoxRisk, head_weight: np.ndarray, X_ref: np.ndarray) -> PenalizedCoxRisk:
    """``model`` with the network's own linear Cox head averaged in: risk = z(ridge) + z(head).

    Each term is z-scored by its standard deviation over ``X_ref`` (n, d), the fold's training features, so
    the two vote equally whatever their scales. Both terms are linear in the features, so the result is one
    linear model with the same ``mean_`` / ``scale_`` and a new ``coef_`` (the exported TorchScript reads
    only those). Why (issue 15): a ridge-Cox fitted on the inner out-of-sample part alone has ~2-4 events
    per fold at 40-80 patients; the head carries what the network learnt on the other 80 %. Measured in
    ``benchmarks/exp_rfs_downstream_small_n.py`` (docs/rfs.md).

    head_weight : (d,) weights of the network's ``risk_head`` (its bias does not change any ranking).
    """
    check_is_fitted(model, "coef_")
    X_ref = np.asarray(X_ref, float)
    w = np.asarray(head_weight, float).ravel()
    sd_r = float(np.std(model.predict(X_ref)))
    sd_h = float(np.std(X_ref @ w))
    out = PenalizedCoxRisk(**model.get_params())
    out.alpha_, out.mean_, out.scale_ = model.alpha_, model.mean_.copy(), model.scale_.copy()
    out.inner_cindex_ = dict(model.inner_cindex_)
    coef = np.zeros_like(model.coef_)
    if sd_r > 1e-12:
        coef += model.coef_ / sd_r
    if sd_h > 1e-12:
        coef += w * model.scale_ / sd_h  # (X - mean) / scale @ (w * scale) = X @ w - const
    out.coef_ = coef
    out.blend_ = {"ridge_sd": sd_r, "head_sd": sd_h}
    return out


def _unpack(y) -> tuple[np.ndarray, np.ndarray]:
    names = y.dtype.names
    return np.asarray(y[names[0]], bool), np.asarray(y[names[1]], float)


def _fit_cox(X, event, time, alpha) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sksurv.util import Surv

    mean = X.mean(0)
    scale = X.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    Z = (X - mean) / scale
    keep = X.std(0) > 1e-8
    coef = np.zeros(X.shape[1])
    if keep.any() and event.any():
        cox = CoxPHSurvivalAnalysis(alpha=alpha, ties="efron", n_iter=200)
        cox.fit(Z[:, keep], Surv.from_arrays(event, time))
        coef[keep] = cox.coef_
    return mean, scale, coef
