"""Helpers shared by the outcome bundles' configs: the preprocessing cache folder, the error boundary.

The bundle root comes from :func:`hnc_core.bundle_paths.config_bundle_root` (the config file's own folder)."""

from __future__ import annotations

from hnc_core.identity import user_cache_dir

__all__ = ["default_cache_dir", "guarded"]


def default_cache_dir(name: str) -> str:
    """Preprocessing cache outside the bundle folder (:func:`hnc_core.identity.user_cache_dir`)."""
    return user_cache_dir(name)


def guarded(fn):
    """``fn`` with the project's own errors (weights, output paths, cohort, nothing predicted) as one ``error:``
    line and exit status 1 at the bundle boundary, instead of MONAI's 50-line config-parser traceback
    (:func:`hnc_core.guards.bundle_entry`); any other exception keeps its traceback."""
    from hnc_core.guards import bundle_entry
    from survival_head.io.checkpoints import WeightsError

    return bundle_entry(fn, (WeightsError,))
