"""Helpers the bundle configs reference: locate the bundle root without absolute paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def bundle_root(default: str = ".") -> str:
    """Bundle folder = parent of the ``configs/`` folder holding the ``--config_file`` given on the command
    line (``python -m monai.bundle run --config_file B/configs/x.json``); else ``default`` (cwd-relative).
    Override with ``--bundle_root``.
    """
    argv = sys.argv
    for i, a in enumerate(argv):
        val = None
        if a == "--config_file" and i + 1 < len(argv):
            val = argv[i + 1]
        elif a.startswith("--config_file="):
            val = a.split("=", 1)[1]
        if val:
            first = val.strip("[]'\" ").split(",")[0].strip("'\" ")
            cfg = Path(first).resolve()
            root = cfg.parent.parent if cfg.parent.name == "configs" else cfg.parent
            return str(root)
    return os.path.abspath(default)
