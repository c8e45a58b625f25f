"""Patient-level cross-validation folds stratified by event."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold


def stratified_folds(ids: list[str], event: np.ndarray, n_folds: int = 5, seed: int = 0) -> list[dict]:
    """K folds of patient IDs: ``[{"train": [...], "val": [...]}, ...]``, each validation part holding
    about 1/K of the events. Every patient is in exactly one validation part."""
    event = np.asarray(event, int)
    n_splits = int(min(n_folds, max(2, min(np.bincount(event, minlength=2)))))
    if n_splits < n_folds:
        raise ValueError(f"{n_folds} folds need >= {n_folds} events and censored patients; "
                         f"got {int(event.sum())} events of {len(event)} patients")
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    ids = np.asarray(ids)
    return [{"train": ids[tr].tolist(), "val": ids[va].tolist()} for tr, va in cv.split(ids, event)]


def inner_split(ids: list[str], event: np.ndarray, fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split a fold's training IDs into (fit, early-stopping) parts stratified by event.

    Early stopping on the outer validation patients would bias their out-of-fold C-index upwards (the
    best epoch is chosen on them); this inner part keeps the outer validation untouched.
    ``fraction <= 0`` (or too few events to stratify) returns ``(ids, [])``.
    """
    from sklearn.model_selection import train_test_split

    event = np.asarray(event, int)
    n_stop = int(round(fraction * len(ids)))
    if fraction <= 0 or n_stop < 2 or min(np.bincount(event, minlength=2)) < 2:
        return list(ids), []
    fit, stop = train_test_split(list(ids), test_size=n_stop, stratify=event, random_state=seed)
    return sorted(fit), sorted(stop)
