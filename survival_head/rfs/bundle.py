"""Helpers the bundle configs reference (``$survival_head.rfs.bundle...``): bundle root, device."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path


def _config_files_from_argv(argv: list[str]) -> list[str]:
    for i, a in enumerate(argv):
        if a.startswith("--config_file="):
            value = a.split("=", 1)[1]
        elif a == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        if value.startswith("["):
            try:
                return [str(v) for v in ast.literal_eval(value)]
            except (ValueError, SyntaxError):
                pass
        return [v for v in value.split(",") if v]
    return []


def find_bundle_root(argv: list[str] | None = None) -> str:
    """Bundle folder = parent of the ``configs/`` folder of the ``--config_file`` given on the command
    line (so ``python -m monai.bundle run`` works from any working directory); else the env var
    ``HNC_RFS_BUNDLE_ROOT``; else the working directory. Override with ``--bundle_root``."""
    files = _config_files_from_argv(sys.argv if argv is None else argv)
    if files:
        cfg_dir = Path(files[0]).resolve().parent
        return str(cfg_dir.parent if cfg_dir.name == "configs" else cfg_dir)
    return os.environ.get("HNC_RFS_BUNDLE_ROOT", os.getcwd())


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
