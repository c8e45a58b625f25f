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


def config_bundle_root(default: str | None = None) -> str:
    """Bundle folder = parent of the ``configs/`` folder the running config was read from.

    MONAI's ``ConfigWorkflow`` (what ``python -m monai.bundle run`` and Python users build) records that
    folder as ``config_root_path``; this finds the workflow being initialised on the call stack, so the
    answer is right from the CLI, from Python and from any working directory. Outside a ConfigWorkflow
    (MONAI Deploy's bundle operator is recognised the same way, by its ``bundle_path``) ``default`` or the working
    directory is returned. ``--bundle_root`` still overrides.
    """
    import inspect

    from monai.bundle import ConfigWorkflow

    frame = inspect.currentframe()
    try:
        while frame is not None:
            obj = frame.f_locals.get("self")
            if isinstance(obj, ConfigWorkflow):
                root = Path(obj.config_root_path).resolve()
                return str(root.parent if root.name == "configs" else root)
            if type(obj).__name__ == "MonaiBundleInferenceOperator" and getattr(obj, "bundle_path", None):
                path = Path(obj.bundle_path).resolve()  # MONAI Deploy: a bundle folder or a model.ts file
                return str(path if path.is_dir() else path.parent)
            frame = frame.f_back
    finally:
        del frame
    return default or os.getcwd()


def default_cache_dir(name: str) -> str:
    """Preprocessing cache outside the bundle folder: ``$HNC_PETCT_CACHE`` or ``$XDG_CACHE_HOME/hnc-petct``
    (default ``~/.cache/hnc-petct``), sub-folder ``name``."""
    base = os.environ.get("HNC_PETCT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hnc-petct")
    return os.path.join(base, name)
