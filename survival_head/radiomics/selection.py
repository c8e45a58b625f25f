"""Radiomics feature selection fitted on training folds only.

1. Drop features that are non-finite or constant in the training rows.
2. Correlation filter: walk the features in order of univariate relevance (|AUC - 0.5| on the
   training labels) and keep one only if its |Spearman rho| with every kept feature is <= ``corr_threshold``.
   With ``per_family=True`` (default) the filter runs inside each feature family (region x class, e.g.
   ``tumour/shape``, ``ring/glcm``), so a shape feature is never dropped because it correlates with a
   texture feature (texture statistics of a larger lesion correlate with its volume).
3. Ranking. ``method="stability"`` (default): stability selection, i.e. an L1-penalised logistic
   model on ``n_bootstrap`` stratified half-samples; features ranked by how often they are chosen
   (ties: univariate relevance). ``method="rf"``: random-forest impurity importance (the original rule;
   unstable with ~3,000 candidates and ~150 patients).
4. ``k``: with ``k_by_cv=True`` (default) the number kept is chosen among ``k_grid`` (capped at ``k``) by
   an inner stratified CV of an L2 logistic model's AUC on the top-k features; otherwise exactly ``k``.
Selected columns are median-imputed and (optionally) standardised with training statistics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils.validation import check_is_fitted

from hnc_core.io import write_json_atomic


def _as_frame(X) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, float),
                                                             columns=[f"f{i}" for i in range(np.shape(X)[1])])


def _relevance(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|AUC - 0.5| of each column via the Mann-Whitney rank sum, shape (n_features,)."""
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    if n1 == 0 or n0 == 0:
        return np.zeros(X.shape[1])
    ranks = np.apply_along_axis(rankdata, 0, X)
    auc = (ranks[pos].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.abs(auc - 0.5)


def correlation_filter(X: np.ndarray, order: np.ndarray, threshold: float) -> list[int]:
    """Column indices kept by the greedy |Spearman rho| <= threshold filter, visiting ``order``."""
    ranks = np.apply_along_axis(rankdata, 0, X)
    ranks = (ranks - ranks.mean(0)) / (ranks.std(0) + 1e-12)
    kept: list[int] = []
    for j in order:
        if kept:
            rho = ranks[:, kept].T @ ranks[:, j] / len(ranks)
            if np.max(np.abs(rho)) > threshold:
                continue
        kept.append(int(j))
    return kept


def feature_family(name: str) -> str:
    """``region/class`` of a radiomics column (``tumour__original_glcm_Contrast`` -> ``tumour/glcm``)."""
    region, _, rest = str(name).partition("__")
    parts = rest.split("_")
    cls = parts[1] if len(parts) >= 3 else (parts[0] if parts[0] else "other")
    return f"{region}/{cls}" if rest else "other"


def stability_scores(A: np.ndarray, y: np.ndarray, n_bootstrap: int = 50, C: float = 0.1,
                     random_state: int = 0) -> np.ndarray:
    """Selection frequency (0..1) of each column of standardised ``A`` (n, d) under an L1 logistic model
    refitted on ``n_bootstrap`` stratified half-samples."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(random_state)
    Z = (A - A.mean(0)) / (A.std(0) + 1e-12)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    counts = np.zeros(A.shape[1])
    for _ in range(n_bootstrap):
        idx = np.concatenate([rng.choice(pos, max(1, len(pos) // 2), replace=False),
                              rng.choice(neg, max(1, len(neg) // 2), replace=False)])
        m = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", class_weight="balanced", max_iter=200)
        m.fit(Z[idx], y[idx])
        counts += np.abs(m.coef_[0]) > 1e-8
    return counts / max(n_bootstrap, 1)


def choose_k_by_cv(A: np.ndarray, y: np.ndarray, order: list[int], grid, folds: int = 3,
                   random_state: int = 0) -> tuple[int, dict]:
    """The k in ``grid`` whose top-k columns of ``order`` give the best inner-CV AUC (L2 logistic)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    n_splits = int(min(folds, np.bincount(y, minlength=2).min()))
    grid = sorted({int(k) for k in grid if 1 <= int(k) <= len(order)}) or [len(order)]
    if n_splits < 2:
        return grid[-1], {}
    cv = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    scores = {}
    for k in grid:
        cols = order[:k]
        aucs = []
        for tr, va in cv.split(A, y):
            mu, sd = A[tr][:, cols].mean(0), A[tr][:, cols].std(0) + 1e-12
            m = LogisticRegression(C=0.1, class_weight="balanced", max_iter=500)
            m.fit((A[tr][:, cols] - mu) / sd, y[tr])
            aucs.append(roc_auc_score(y[va], m.decision_function((A[va][:, cols] - mu) / sd)))
        scores[k] = float(np.mean(aucs))
    best = max(grid, key=lambda k: (round(scores[k], 6), -k))  # ties: fewer features
    return best, scores


class RadiomicsSelector(TransformerMixin, BaseEstimator):
    """Family-wise Spearman filter, stability-selection ranking, k by inner CV (see module docstring).

    Parameters: ``corr_threshold`` (|rho| above which the less relevant feature is dropped), ``k`` (the
    maximum, or the exact number with ``k_by_cv=False``), ``n_estimators`` (``method="rf"``),
    ``random_state``, ``standardize``, ``method`` (``"stability"`` | ``"rf"``), ``per_family``,
    ``k_by_cv``, ``k_grid``, ``n_bootstrap``.
    Fitted: ``feature_names_in_``, ``kept_after_corr_``, ``importances_`` (dict: selection frequency or RF
    importance), ``selected_``, ``k_``, ``k_scores_``, ``medians_``, ``means_``, ``scales_``.
    """

    def __init__(self, corr_threshold: float = 0.9, k: int = 36, n_estimators: int = 300,
                 random_state: int = 0, standardize: bool = True, method: str = "stability",
                 per_family: bool = True, k_by_cv: bool = True, k_grid=(4, 8, 16, 36), n_bootstrap: int = 50):
        self.corr_threshold = corr_threshold
        self.k = k
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.standardize = standardize
        self.method = method
        self.per_family = per_family
        self.k_by_cv = k_by_cv
        self.k_grid = k_grid
        self.n_bootstrap = n_bootstrap

    def fit(self, X, y) -> "RadiomicsSelector":
        """X: (n_patients, n_features) DataFrame or array; y: (n_patients,) 0/1."""
        df = _as_frame(X)
        y = np.asarray(y).astype(int)
        if len(df) != len(y):
            raise ValueError(f"X has {len(df)} rows but y has {len(y)}")
        self.feature_names_in_ = np.array(df.columns, dtype=object)
        A = df.to_numpy(float)
        finite = np.isfinite(A).all(0)
        A = np.where(np.isfinite(A), A, np.nanmedian(np.where(np.isfinite(A), A, np.nan), axis=0))
        usable = np.flatnonzero(finite & (A.std(0) > 1e-12))
        rel = _relevance(A[:, usable], y)
        order = usable[np.argsort(-rel, kind="stable")]
        if self.per_family:
            fam = np.array([feature_family(c) for c in df.columns], dtype=object)
            kept = sorted((j for f in dict.fromkeys(fam[order]) for j in
                           correlation_filter(A, order[fam[order] == f], self.corr_threshold)),
                          key=list(order).index)
        else:
            kept = correlation_filter(A, order, self.corr_threshold)
        self.kept_after_corr_ = [str(df.columns[j]) for j in kept]
        if self.method == "rf":
            rf = RandomForestClassifier(n_estimators=self.n_estimators, random_state=self.random_state,
                                        class_weight="balanced", min_samples_leaf=2, n_jobs=1)
            rf.fit(A[:, kept], y)
            imp = rf.feature_importances_
            rank = np.argsort(-imp, kind="stable")
        elif self.method == "stability":
            imp = stability_scores(A[:, kept], y, self.n_bootstrap, random_state=self.random_state)
            rank = np.arange(len(kept))[np.argsort(-imp, kind="stable")]  # kept is in relevance order: ties
        else:
            raise ValueError(f"method must be 'stability' or 'rf', got {self.method!r}")
        k_max = min(int(self.k), len(kept))
        self.k_scores_ = {}
        self.k_ = k_max
        if self.k_by_cv:
            self.k_, self.k_scores_ = choose_k_by_cv(A[:, kept], y, [int(i) for i in rank],
                                                     [g for g in self.k_grid if g <= k_max] + [k_max],
                                                     random_state=self.random_state)
        top = rank[: self.k_]
        self.importances_ = {self.kept_after_corr_[i]: float(imp[i]) for i in top}
        self.selected_ = [self.kept_after_corr_[i] for i in top]
        sel = df[self.selected_].to_numpy(float)
        self.medians_ = np.nanmedian(np.where(np.isfinite(sel), sel, np.nan), axis=0)
        filled = np.where(np.isfinite(sel), sel, self.medians_)
        self.means_ = filled.mean(0)
        sd = filled.std(0)
        self.scales_ = np.where(sd > 1e-12, sd, 1.0)
        return self

    def transform(self, X) -> np.ndarray:
        """Selected features, float32, shape (n_patients, len(selected_)); missing columns are an error."""
        check_is_fitted(self, "selected_")
        df = _as_frame(X)
        missing = [c for c in self.selected_ if c not in df.columns]
        if missing:
            raise KeyError(f"radiomics table lacks selected features {missing[:5]} (different params file?)")
        A = df[self.selected_].to_numpy(float)
        A = np.where(np.isfinite(A), A, self.medians_)
        if self.standardize:
            A = np.clip((A - self.means_) / self.scales_, -10, 10)
        return A.astype(np.float32)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "selected_")
        return np.array(self.selected_, dtype=object)

    # ------------------------------------------------------------------ persistence (JSON)
    def to_dict(self) -> dict:
        check_is_fitted(self, "selected_")
        return {"type": "RadiomicsSelector", "params": self.get_params(), "selected": self.selected_,
                "kept_after_corr": self.kept_after_corr_, "importances": self.importances_, "k": self.k_,
                "k_scores": {str(k): v for k, v in self.k_scores_.items()},
                "n_features_in": len(self.feature_names_in_), "medians": self.medians_.tolist(),
                "means": self.means_.tolist(), "scales": self.scales_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "RadiomicsSelector":
        sel = cls(**{**d["params"], **({"k_grid": tuple(d["params"]["k_grid"])} if "k_grid" in d["params"] else {})})
        sel.k_ = int(d.get("k", len(d["selected"])))
        sel.k_scores_ = {int(k): v for k, v in d.get("k_scores", {}).items()}
        sel.selected_, sel.kept_after_corr_ = list(d["selected"]), list(d["kept_after_corr"])
        sel.importances_ = dict(d["importances"])
        sel.feature_names_in_ = np.array(d["kept_after_corr"], dtype=object)
        sel.medians_, sel.means_, sel.scales_ = (np.asarray(d[k], float) for k in ("medians", "means", "scales"))
        return sel

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "RadiomicsSelector":
        return cls.from_dict(json.loads(Path(path).read_text()))
