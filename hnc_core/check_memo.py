"""The voxel checks' findings for one patient, remembered while the patient's files are unchanged.

:func:`hnc_core.cohort.load_cohort` with ``check_images=True`` decodes every image to look for NaN, truncation,
swapped modalities, grids and label values. The main job's stages run as separate processes (``hnc-petct run``,
each ``monai.bundle run``), and each validates the cohort it reads; with this memo only the first decodes the
images and the others read the findings back. The key is :func:`hnc_core.identity.cache_key` of the patient's
CT / PET / label (path, size, mtime, inode), their roles and permission bits, the check thresholds and
:data:`CHECK_VERSION`: any edit, replacement, rename or ``chmod`` of a file re-checks that patient.

Where: ``$HNC_PETCT_CHECK_CACHE`` (``off`` disables it), else the project's cache folder ``checks``
(:func:`hnc_core.identity.user_cache_dir`: ``$HNC_PETCT_CACHE`` or ``~/.cache/hnc-petct``). When that folder cannot be written (a read-only container) the checks simply
run every time.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hnc_core.identity import cache_key, user_cache_dir

CHECK_VERSION = "voxel-checks-1"  # bump whenever a check of hnc_core.cohort._check_images changes
_DIR: list = []  # resolved once per process: [Path | None]


def memo_dir() -> Path | None:
    """The writable memo folder, or ``None`` (disabled or not writable)."""
    if _DIR:
        return _DIR[0]
    env = os.environ.get("HNC_PETCT_CHECK_CACHE")
    if env is not None and env.strip().lower() in ("", "off", "0", "none"):
        folder = None
    else:
        folder = Path(env or user_cache_dir("checks"))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            folder = None
    _DIR.append(folder)
    return folder


def _key(files: list[tuple[str, Path]], thresholds: dict) -> str:
    modes = [oct(Path(p).stat().st_mode & 0o7777) for _, p in files]
    return cache_key([p for _, p in files], {"roles": [r for r, _ in files], "modes": modes, **thresholds},
                     version=CHECK_VERSION)


def lookup(files: list[tuple[str, Path]], thresholds: dict) -> list[dict] | None:
    """Findings recorded for exactly these files (``[]``: checked, nothing found), or ``None``."""
    folder = memo_dir()
    if folder is None or not files:
        return None
    try:
        entry = folder / f"{_key(files, thresholds)}.json"
        return json.loads(entry.read_text())["problems"] if entry.is_file() else None
    except (OSError, ValueError, KeyError):
        return None  # a vanished file or a damaged entry: check again


def store(files: list[tuple[str, Path]], thresholds: dict, problems: list[dict]) -> None:
    """Remember the findings of a completed check (best effort: never fails the caller)."""
    from hnc_core.io import write_json_atomic

    folder = memo_dir()
    if folder is None or not files:
        return
    try:
        write_json_atomic(folder / f"{_key(files, thresholds)}.json",
                          {"files": [str(p) for _, p in files], "problems": problems})
    except OSError:
        pass
