"""Weighted average of fold models on a common scale.

Fold models output risks on arbitrary scales (a ridge Cox model's linear predictor, a network's
log-hazard). Each fold's risk is z-scored with the mean and standard deviation of that fold's risk on
its own training patients, so every fold votes in units of "standard deviations of its training
risk"; a fold whose raw outputs are 1000x larger has exactly the same influence.

Fold weights: ``w_k = max(C_val_k - 0.5, floor)`` normalised to sum to 1, where ``C_val_k`` is the
fold model's Harrell C-index on its validation patients: a fold no better than chance keeps only a
small floor weight. ``weighting="uniform"`` gives 1/K.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FoldScale:
    """Training-set risk distribution and validation C-index of one fold."""

    mean: float
    std: float
    val_cindex: float


@dataclass
class RiskEnsemble:
    """Combine per-fold risks; ``weighting`` is ``"cindex"`` (default) or ``"uniform"``."""

    weighting: str = "cindex"
    floor: float = 0.01
    folds: list[FoldScale] = field(default_factory=list)

    def add_fold(self, train_risk: np.ndarray, val_cindex: float) -> None:
        r = np.asarray(train_risk, float)
        sd = float(r.std())
        self.folds.append(FoldScale(float(r.mean()), sd if sd > 1e-12 else 1.0, float(val_cindex)))

    @property
    def weights(self) -> np.ndarray:
        if not self.folds:
            raise ValueError("ensemble has no folds")
        if self.weighting == "uniform":
            w = np.ones(len(self.folds))
        elif self.weighting == "cindex":
            c = np.array([f.val_cindex for f in self.folds], float)
            w = np.maximum(np.nan_to_num(c, nan=0.5) - 0.5, self.floor)
        else:
            raise ValueError(f"unknown weighting {self.weighting!r}")
        return w / w.sum()

    def normalise(self, k: int, risk: np.ndarray) -> np.ndarray:
        f = self.folds[k]
        return (np.asarray(risk, float) - f.mean) / f.std

    def combine(self, fold_risks: list[np.ndarray]) -> np.ndarray:
        """fold_risks : K arrays (n,) of raw fold risks -> (n,) ensemble risk (higher = earlier event)."""
        if len(fold_risks) != len(self.folds):
            raise ValueError(f"got {len(fold_risks)} fold risks for {len(self.folds)} folds")
        z = np.stack([self.normalise(k, r) for k, r in enumerate(fold_risks)])
        return self.weights @ z

    def to_dict(self) -> dict:
        return {"weighting": self.weighting, "floor": self.floor,
                "folds": [vars(f) for f in self.folds], "weights": self.weights.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "RiskEnsemble":
        return cls(d["weighting"], d["floor"], [FoldScale(**f) for f in d["folds"]])
