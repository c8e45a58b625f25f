"""Identity of files on disk without reading them, and a per-process memo of the validated cohort.

``files_identity`` is what the main job's stage fingerprints and :func:`read_cohort` key on: a file
rewritten, added or removed changes it; an unchanged folder costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def files_identity(root: str | Path) -> str:
    """sha256 over (relative path, size, mtime_ns) of every file below ``root``, in sorted order.

    Hidden files and folders (``.name``) are left out: caches some tools write beside the data.
    """
    root = Path(root)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            p = Path(dirpath) / name
            st = p.stat()
            h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


_COHORTS: dict[tuple, object] = {}
_MAX_COHORTS = 4


def read_cohort(root: str | Path, clinical_csv: str | Path | None = None, **kwargs):
    """:func:`hnc_core.cohort.load_cohort`, read and validated once per process while the files are unchanged.

    Every step of a stage that needs the cohort (image preprocessing, radiomics jobs, the DM loader, each
    ablation mode) calls this instead of re-reading the folder; treat the returned ``Cohort`` as read-only.
    """
    from hnc_core.cohort import load_cohort

    key = (str(Path(root).resolve()), files_identity(root), str(clinical_csv), tuple(sorted(kwargs.items())))
    if key not in _COHORTS:
        if len(_COHORTS) >= _MAX_COHORTS:
            _COHORTS.pop(next(iter(_COHORTS)))
        _COHORTS[key] = load_cohort(root, clinical_csv, **kwargs)
    return _COHORTS[key]
