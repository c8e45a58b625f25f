"""Output-location checks run before any work: never write over an input, fail early with one message.

Every command that writes files calls :func:`check_output_file` or :func:`check_output_dir` first, so a
read-only folder, an output path that names a directory, or an output that would land on one of the
command's own inputs (or inside an input / ground-truth folder) is refused before hours of work, with one
message naming the path, instead of a ``PermissionError`` traceback at the end.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Iterable

from hnc_core.failures import failure


class OutputPathError(ValueError):
    """The requested output location is unusable or would overwrite an input."""


def _resolve(p: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(p)))).resolve(strict=False)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def probe_writable(folder: str | os.PathLike) -> None:
    """Create and remove a file in ``folder`` (made if needed); :class:`OutputPathError` if impossible.

    A real write is used (not ``os.access``) so read-only mounts and root-squashed shares are caught too.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".hnc_write_probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except FileExistsError:
        raise OutputPathError(f"cannot create output folder {folder}: a file with that name exists") from None
    except NotADirectoryError:
        raise OutputPathError(f"cannot create output folder {folder}: part of the path is a file") from None
    except OSError as exc:
        why = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "read-only file system", errno.ENOSPC: "no space left"}.get(exc.errno, exc.strerror)
        raise OutputPathError(f"cannot write to output folder {folder}: {why}") from None


def _check_not_input(path: Path, inputs: Iterable, protected_dirs: Iterable, what: str) -> None:
    for inp in inputs:
        if inp is None:
            continue
        ip = _resolve(inp)
        if path == ip or (path.exists() and ip.exists() and os.path.samefile(path, ip)):
            raise OutputPathError(f"{what} {path} is one of this command's inputs; refusing to overwrite it "
                                  "(choose another output path)")
    for d in protected_dirs:
        if d is None:
            continue
        dp = _resolve(d)
        if _inside(path, dp):
            raise OutputPathError(f"{what} {path} is inside the input folder {dp}; refusing to write there "
                                  "(choose an output location outside it)")


def check_output_file(path: str | os.PathLike, *, inputs: Iterable = (), protected_dirs: Iterable = (),
                      what: str = "output file") -> Path:
    """Check that a file can be written at ``path`` without touching an input; return the resolved path."""
    p = _resolve(path)
    if p.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; give a file name (e.g. {Path(path) / 'report.json'})")
    _check_not_input(p, inputs, protected_dirs, what)
    parent = p.parent
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise OutputPathError(f"cannot write {what} {path}: {existing} is a file, not a folder")
    probe_writable(parent)
    if p.exists() and not os.access(p, os.W_OK) and os.geteuid() != 0:
        raise OutputPathError(f"cannot overwrite {what} {path}: permission denied")
    return p


def check_output_dir(path: str | os.PathLike, *, inputs: Iterable = (), protected_dirs: Iterable = (),
                     what: str = "output folder") -> Path:
    """Check (and create) an output folder that must not be, or lie inside, an input folder."""
    p = _resolve(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a folder")
    _check_not_input(p, inputs, protected_dirs, what)
    probe_writable(p)
    return p


class NothingPredicted(RuntimeError):
    """No patient of the batch could be predicted (every one is listed in ``failures.json``)."""


def previous_prediction_ids(out_dir: str | os.PathLike, name: str = "predictions.json") -> set[str]:
    """PatientIDs in an earlier ``OUT/predictions.json`` (HECKTOR list or ``{"predictions": [...]}``)."""
    import json

    path = Path(out_dir) / name
    if not path.is_file():
        return set()
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    rows = obj.get("predictions", []) if isinstance(obj, dict) else obj
    return {str(r["PatientID"]) for r in rows if isinstance(r, dict) and "PatientID" in r}


def prediction_suffix(out_dir: str | os.PathLike, failed_ids: Iterable[str], name: str = "predictions.json") -> str:
    """``""`` to write ``predictions.*`` normally, ``".partial"`` when that would drop earlier predictions.

    An earlier ``predictions.json`` that holds a patient who fails now is never replaced by the smaller set:
    the new results go to ``predictions.partial.*`` beside it (the caller logs why).
    """
    lost = previous_prediction_ids(out_dir, name) & set(failed_ids)
    return ".partial" if lost else ""


def bundle_entry(fn, errors: tuple[type[BaseException], ...] = ()):
    """Wrap a bundle ``_target_`` so the project's own errors end the run with one line (exit status 1).

    ``python -m monai.bundle run`` otherwise buries such a message under 50+ lines of config-parser
    traceback. Only the listed error types (plus this module's) are shortened; anything else is a bug
    and keeps its traceback.
    """
    import functools
    import sys

    from hnc_core.cohort import CohortError

    handled = (OutputPathError, NothingPredicted, CohortError, *errors)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except handled as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper


def clinical_gate(cohort, ids: Iterable[str], allow_missing: bool, model: str = "model"
                  ) -> tuple[list[str], dict[str, str], list[dict]]:
    """Patients of ``ids`` without a usable clinical row: refused, or kept and flagged with ``allow_missing``.

    Returns ``(kept ids, {id: warning}, failure records {PatientID, file, error})``. Used wherever a model that
    reads clinical variables predicts (Python API and bundle workflows alike).
    """
    import logging

    log = logging.getLogger(__name__)
    keep, warnings, failures = [], {}, []
    for pid in ids:
        reason = cohort.clinical_missing_reason(pid)
        if reason is None:
            keep.append(pid)
        elif allow_missing:
            warnings[pid] = f"clinical data unavailable ({reason}); predicted with every clinical value Unknown"
            log.warning("patient %s: %s", pid, warnings[pid])
            keep.append(pid)
        else:
            failures.append(failure(pid, cohort.clinical_csv or cohort.root,
                                    f"clinical data unavailable ({reason}); the {model} needs it: fix the CSV, "
                                    "or set allow_missing_clinical to predict with every clinical value Unknown"))
            log.error("excluded patient %s: clinical data unavailable (%s)", pid, reason)
    return keep, warnings, failures


def guarded_prediction_outputs(out_dir: str | os.PathLike, n_predicted: int, failures: list[dict],
                               source: str | os.PathLike) -> str:
    """Before writing predictions to ``out_dir``: raise :class:`NothingPredicted` when nothing was predicted
    (``failures.json`` is written by the caller first), else return the file-name suffix (``""`` or
    ``".partial"``) that keeps an earlier, fuller ``predictions.json`` intact."""
    import logging

    out_dir = Path(out_dir)
    if not n_predicted:
        shown = "; ".join(f"{f['PatientID']}: {f['error']}" for f in failures[:3])
        raise NothingPredicted(f"no patient of {source} could be predicted ({len(failures)} rejected, listed in "
                               f"{out_dir / 'failures.json'}){': ' + shown if shown else ''}")
    suffix = prediction_suffix(out_dir, [f["PatientID"] for f in failures])
    if suffix:
        logging.getLogger(__name__).error(
            "%s holds earlier predictions for patients that fail now; keeping it and writing this run's %d "
            "predictions to predictions%s.*", out_dir / "predictions.json", n_predicted, suffix)
    return suffix
