"""Helpers the bundle configs reference (``$survival_head.rfs.bundle...``): bundle root, device, cache."""

from __future__ import annotations

import os

from hnc_core.bundle_paths import config_bundle_root
from survival_head.io.bundle_paths import default_cache_dir

__all__ = ["config_bundle_root", "default_cache_dir", "default_device", "distributed_device"]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def distributed_device() -> str:
    """``cuda:LOCAL_RANK`` under torchrun with GPUs, else ``cpu`` (gloo)."""
    import torch

    rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(rank)
        return f"cuda:{rank}"
    return "cpu"
