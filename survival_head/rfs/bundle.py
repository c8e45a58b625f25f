"""Helpers the bundle configs reference (``$survival_head.rfs.bundle...``): bundle root, device."""

from __future__ import annotations

import os

from survival_head.io.bundle_root import bundle_root


def find_bundle_root(argv: list[str] | None = None) -> str:
    """The bundle folder (:func:`survival_head.io.bundle_root.bundle_root`); named so in the RFS configs."""
    return bundle_root(argv=argv)


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
