"""The one bundle-root lookup both MONAI bundles' configs use (``$bundle_root()``)."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path


def config_files_from_argv(argv: list[str]) -> list[str]:
    """The ``--config_file`` value(s) of a ``python -m monai.bundle run`` command line (comma list or list literal)."""
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
                value = value.strip("[]")
        return [v.strip().strip("'\"") for v in value.split(",") if v.strip()]
    return []


def bundle_root(default: str | None = None, argv: list[str] | None = None) -> str:
    """Bundle folder = parent of the ``configs/`` folder of the first ``--config_file`` on the command line
    (so ``python -m monai.bundle run`` works from any working directory); else ``$HNC_RFS_BUNDLE_ROOT``
    (kept for scripts), else ``default``, else the working directory. Override with ``--bundle_root``."""
    files = config_files_from_argv(sys.argv if argv is None else argv)
    if files:
        cfg_dir = Path(files[0]).resolve().parent
        return str(cfg_dir.parent if cfg_dir.name == "configs" else cfg_dir)
    return os.path.abspath(os.environ.get("HNC_RFS_BUNDLE_ROOT") or default or os.getcwd())
