"""Bundle paths shared by every bundle's configs: the bundle root from the running config's own folder."""

from __future__ import annotations

import os
from pathlib import Path


def config_bundle_root(default: str | None = None) -> str:
    """Bundle folder = parent of the ``configs/`` folder the running config was read from.

    MONAI's ``ConfigWorkflow`` (what ``python -m monai.bundle run`` and Python users build) records that
    folder as ``config_root_path``; this finds the workflow being initialised on the call stack, so the
    answer is right from the CLI, from Python and from any working directory. ``monai.bundle``'s other
    commands (``ckpt_export``, ``verify_net_in_out``) are recognised by their ``config_file``, MONAI
    Deploy's bundle operator by its ``bundle_path``. Elsewhere ``default`` or the working directory is
    returned. ``--bundle_root`` still overrides.
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
            if frame.f_code.co_filename.replace("\\", "/").endswith("monai/bundle/scripts.py"):
                cfg = frame.f_locals.get("config_file_", frame.f_locals.get("config_file"))
                cfg = cfg[0] if isinstance(cfg, (list, tuple)) and cfg else cfg
                if isinstance(cfg, (str, Path)) and Path(cfg).is_file():  # ckpt_export, verify_net_in_out, ...
                    root = Path(cfg).resolve().parent
                    return str(root.parent if root.name == "configs" else root)
            if type(obj).__name__ == "MonaiBundleInferenceOperator" and getattr(obj, "bundle_path", None):
                path = Path(obj.bundle_path).resolve()  # MONAI Deploy: a bundle folder or a model.ts file
                path = path if path.is_dir() else path.parent
                return str(path.parent if path.name == "models" else path)
            frame = frame.f_back
    finally:
        del frame
    return default or os.getcwd()
