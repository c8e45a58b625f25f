"""Helpers the DM bundle configs reference: the bundle root, from the running config's own folder."""

from __future__ import annotations

from hnc_core.bundle_paths import config_bundle_root


def bundle_root(default: str | None = None) -> str:
    """Bundle folder = parent of the ``configs/`` folder the running config was read from (``monai.bundle run``,
    ``ConfigWorkflow`` from Python, ``ckpt_export``, MONAI Deploy), from any working directory; else
    ``default`` or the working directory. Override with ``--bundle_root``."""
    return config_bundle_root(default)
