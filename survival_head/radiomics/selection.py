"""Radiomics feature selection fitted on training folds only.

1. Drop features that are non-finite or constant in the training rows.
2. Correlation filter: walk the features in order of univariate relevance (|AUC - 0.5| on the
   training labels) and keep one only if its |Spearman rho| with every kept feature is <= ``corr_threshold``.
3. Random-forest (impurity) importance on the survivors; keep the top ``k``.
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


class RadiomicsSelector(TransformerMixin, BaseEstimator):
    """Spearman filter then random-forest top-``k``.

    Parameters: ``corr_threshold`` (|rho| above which the less relevant feature is dropped), ``k``,
    ``n_estimators``, ``random_state``, ``standardize``.
    Fitted: ``feature_names_in_``, ``kept_after_corr_``, ``importances_`` (dict), ``selected_``,
    ``medians_``, ``means_``, ``scales_`` (arrays over ``selected_``).
    """

    def __init__(self, corr_threshold: float = 0.9, k: int = 36, n_estimators: int = 300,
                 random_state: int = 0, standardize: bool = True):
        self.corr_threshold = corr_threshold
        self.k = k
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.standardize = standardize

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
        kept = correlation_filter(A, order, self.corr_threshold)
        self.kept_after_corr_ = [str(df.columns[j]) for j in kept]
        rf = RandomForestClassifier(n_estimators=self.n_estimators, random_state=self.random_state,
                                    class_weight="balanced", min_samples_leaf=2, n_jobs=1)
        rf.fit(A[:, kept], y)
        imp = rf.feature_importances_
        top = np.argsort(-imp, kind="stable")[: self.k]
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
                "kept_after_corr": self.kept_after_corr_, "importances": self.importances_,
                "n_features_in": len(self.feature_names_in_), "medians": self.medians_.tolist(),
                "means": self.means_.tolist(), "scales": self.scales_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "RadiomicsSelector":
        sel = cls(**d["params"])
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
