"""Bundle paths shared by the outcome bundles' configs: bundle root from the config's own folder, cache dir."""

from __future__ import annotations

import os

from hnc_core.bundle_paths import config_bundle_root

__all__ = ["config_bundle_root", "default_cache_dir", "guarded"]


def default_cache_dir(name: str) -> str:
    """Preprocessing cache outside the bundle folder: ``$HNC_PETCT_CACHE`` or ``$XDG_CACHE_HOME/hnc-petct``
    (default ``~/.cache/hnc-petct``), sub-folder ``name``."""
    base = os.environ.get("HNC_PETCT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hnc-petct")
    return os.path.join(base, name)


def guarded(fn):
    """``fn`` with the project's own errors (weights, output paths, cohort, nothing predicted) as one ``error:``
    line and exit status 1 at the bundle boundary, instead of MONAI's 50-line config-parser traceback
    (:func:`hnc_core.guards.bundle_entry`); any other exception keeps its traceback."""
    from hnc_core.guards import bundle_entry
    from survival_head.io.checkpoints import WeightsError

    return bundle_entry(fn, (WeightsError,))
