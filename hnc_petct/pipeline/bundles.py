"""Locate the MONAI bundles that ship beside the package and build their CLI calls."""

from __future__ import annotations

import os
from pathlib import Path

from hnc_petct.pipeline.context import StageError, python_module


def bundle_dir(name: str) -> Path:
    """``$HNC_BUNDLES_DIR/<name>`` or ``<repository>/bundles/<name>`` (source/editable installs)."""
    roots = [Path(os.environ["HNC_BUNDLES_DIR"])] if os.environ.get("HNC_BUNDLES_DIR") else []
    roots.append(Path(__file__).resolve().parents[2] / "bundles")
    for root in roots:
        if (root / name / "configs" / "metadata.json").is_file():
            return root / name
    raise StageError(f"bundle {name} not found in {[str(r) for r in roots]}; set HNC_BUNDLES_DIR to the folder "
                     "holding the bundles (the repository's bundles/)")


def bundle_run(name: str, config: str, **overrides) -> list[str]:
    """argv of ``python -m monai.bundle run --config_file <bundle>/configs/<config>.json --key value ...``."""
    argv = python_module("monai.bundle", "run", "--config_file", str(bundle_dir(name) / "configs" / f"{config}.json"))
    for k, v in overrides.items():
        if v is not None:
            argv += [f"--{k}", str(v)]
    return argv
