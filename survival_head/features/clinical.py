"""Clinical encoder: sklearn-style fit/transform, saved as human-readable JSON.

Numeric columns (Age, years) are median-imputed then standardised; categorical columns are one-hot
encoded over the codes seen in the training rows plus an explicit ``Unknown`` that takes missing
values, invalid codes and codes never seen in training (with a warning at transform time).
Fit it on training folds only.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from hnc_core import schema
from hnc_core.cohort import normalise_code
from hnc_core.io import write_json_atomic

log = logging.getLogger(__name__)

UNKNOWN = "Unknown"
RFS_NUMERIC = (schema.AGE,)
RFS_CATEGORICAL = (schema.GENDER, schema.TOBACCO, schema.ALCOHOL, schema.PERFORMANCE, schema.M_STAGE,
                   schema.TREATMENT)
DM_NUMERIC = (schema.AGE,)
DM_CATEGORICAL = (schema.GENDER, schema.TOBACCO, schema.ALCOHOL)


def _code_key(v) -> str:
    """Stable string key of a categorical value ('' for missing)."""
    c = normalise_code(v)
    return "" if c is None else str(c)


class ClinicalEncoder(TransformerMixin, BaseEstimator):
    """Encode a clinical table into a float matrix.

    Parameters
    ----------
    numeric : column names imputed with the training median and standardised.
    categorical : column names one-hot encoded, with an ``Unknown`` level per column.

    Fitted attributes: ``medians_``, ``means_``, ``scales_`` (dicts per numeric column),
    ``categories_`` (dict column -> list of known codes, ``Unknown`` last), ``feature_names_``.
    """

    def __init__(self, numeric: Sequence[str] = RFS_NUMERIC, categorical: Sequence[str] = RFS_CATEGORICAL):
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y=None) -> "ClinicalEncoder":
        """X : DataFrame, shape = (n_samples, ...) holding the configured columns."""
        self.medians_, self.means_, self.scales_ = {}, {}, {}
        for col in self.numeric:
            v = _numeric(X, col)
            med = float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0
            filled = np.where(np.isfinite(v), v, med)
            self.medians_[col] = med
            self.means_[col] = float(filled.mean())
            sd = float(filled.std())
            self.scales_[col] = sd if sd > 1e-8 else 1.0
        self.categories_ = {}
        for col in self.categorical:
            allowed = {str(c) for c in schema.CATEGORICAL_CODES.get(col, set())}
            seen = sorted({_code_key(v) for v in _column(X, col)} - {""})
            known = [c for c in seen if not allowed or c in allowed]
            self.categories_[col] = known + [UNKNOWN]
        self.feature_names_ = [f"{c} (z)" for c in self.numeric] + [
            f"{col}={lvl}" for col in self.categorical for lvl in self.categories_[col]
        ]
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Return float32 array, shape = (n_samples, n_features_out)."""
        check_is_fitted(self, "categories_")
        n = len(X)
        blocks = []
        for col in self.numeric:
            v = _numeric(X, col)
            v = np.where(np.isfinite(v), v, self.medians_[col])
            blocks.append(((v - self.means_[col]) / self.scales_[col])[:, None])
        ids = X.index if isinstance(X, pd.DataFrame) else range(n)
        for col in self.categorical:
            levels = self.categories_[col]
            onehot = np.zeros((n, len(levels)))
            for i, (pid, v) in enumerate(zip(ids, _column(X, col))):
                key = _code_key(v)
                if key and key not in levels:
                    log.warning("patient %s: %s = %r was not seen in training; encoded as Unknown", pid, col, v)
                onehot[i, levels.index(key) if key in levels else len(levels) - 1] = 1.0
            blocks.append(onehot)
        return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((n, 0), np.float32)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "categories_")
        return np.array(self.feature_names_, dtype=object)

    # ------------------------------------------------------------------ persistence (readable JSON)
    def to_dict(self) -> dict:
        check_is_fitted(self, "categories_")
        return {
            "type": "ClinicalEncoder", "numeric": list(self.numeric), "categorical": list(self.categorical),
            "medians": self.medians_, "means": self.means_, "scales": self.scales_,
            "categories": self.categories_, "feature_names": self.feature_names_,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ClinicalEncoder":
        enc = cls(numeric=tuple(d["numeric"]), categorical=tuple(d["categorical"]))
        enc.medians_, enc.means_, enc.scales_ = d["medians"], d["means"], d["scales"]
        enc.categories_, enc.feature_names_ = d["categories"], d["feature_names"]
        return enc

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "ClinicalEncoder":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _column(X, col) -> list:
    if col not in X.columns:
        return [None] * len(X)
    return X[col].tolist()


def _numeric(X, col) -> np.ndarray:
    out = []
    for v in _column(X, col):
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(f)
    return np.asarray(out, float)
