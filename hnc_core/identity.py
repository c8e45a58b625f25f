"""Identity of files on disk without reading them: the one cache-key policy of the project.

A file is "the same" while its path, size, modification time (ns) and inode are unchanged (make's rule, plus
the inode so that an atomic replace within one timestamp tick is still seen). Everything that caches or
resumes keys on it: the main job's stage fingerprints and :func:`read_cohort` (``files_identity`` of a
folder), the RFS preprocessing cache and the radiomics cache (:func:`cache_key` of a patient's files and the
parameters that shape the result). An unchanged file costs one ``stat``; nothing is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def user_cache_dir(name: str) -> str:
    """The project's cache folder ``name``: under ``$HNC_PETCT_CACHE``, else ``$XDG_CACHE_HOME/hnc-petct``
    (default ``~/.cache/hnc-petct``); outside bundles and cohorts. Not created here."""
    base = os.environ.get("HNC_PETCT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hnc-petct")
    return os.path.join(base, name)


def file_identity(path: str | Path) -> str:
    """``"size:mtime_ns:inode"`` of one file (raises ``FileNotFoundError`` when it is missing)."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def cache_key(files, params: dict, version: str, length: int = 32) -> str:
    """Hex key of a cached result computed from ``files`` with ``params`` (JSON-serialisable) by code at
    ``version``: sha256 over the version, the sorted-key JSON of ``params`` and each file's resolved path and
    :func:`file_identity`. Any change of one of them gives a new key (the entry is recomputed)."""
    parts = [str(version), json.dumps(params, sort_keys=True, default=str)]
    for f in files:
        parts += [str(Path(f).resolve()), file_identity(f)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def files_identity(root: str | Path) -> str:
    """sha256 over (relative path, :func:`file_identity`) of every file below ``root``, in sorted order.

    Hidden files and folders (``.name``) are left out: caches some tools write beside the data.
    """
    root = Path(root)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            p = Path(dirpath) / name
            h.update(f"{p.relative_to(root).as_posix()}\0{file_identity(p)}\n".encode())
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
