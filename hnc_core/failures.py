"""The one shape of a per-patient failure record, shared by every command, bundle and the main job.

A record is a plain dict ``{"PatientID": str, "file": str | None, "error": str}``: the patient, the file that
caused it (``None`` when no single file did, e.g. a missing row) and a one-line reason. Lists of records are
written as ``failures.json`` and into ``predictions.json``; :func:`by_patient` is the ``{PatientID: error}``
view that older outputs (``"errors"`` keys) carry beside it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

FailureRecord = dict  # {"PatientID": str, "file": str | None, "error": str}


def failure(patient_id: str, file: str | os.PathLike | None, error: str) -> FailureRecord:
    """One record; ``file`` is stored as a string (or ``None``)."""
    return {"PatientID": str(patient_id), "file": None if file in (None, "") else str(file), "error": str(error)}


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause of ``exc`` (past wrappers such as MONAI's "applying transform ..." RuntimeError)."""
    root = exc
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__
    return root


def reason_line(exc: BaseException, limit: int = 300) -> str:
    """The informative line of an exception message: the first mentioning "error" (ITK style), else the last."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    line = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else type(exc).__name__)
    return line.split("ERROR:", 1)[-1].strip()[:limit]


def from_exception(patient_id: str, exc: BaseException, files: Sequence[str | os.PathLike | None] = (),
                   what: str = "") -> FailureRecord:
    """Record for ``exc`` raised while processing ``patient_id``'s ``files``: the file is the one the root cause
    names (its ``filename`` or a file whose name appears in the message), else all ``files`` joined by " / "."""
    root = root_cause(exc)
    said = f"{exc} {root}"
    given = [str(f) for f in files if f is not None]
    named = [f for f in given if Path(f).name in said]
    file = getattr(root, "filename", None) or (named[0] if named else (" / ".join(given) or None))
    reason = reason_line(root)
    return failure(patient_id, file, f"{what}: {reason}" if what else reason)


def by_patient(failures: Iterable[FailureRecord]) -> dict[str, str]:
    """``{PatientID: error}`` of ``failures`` (the first record of a patient wins)."""
    out: dict[str, str] = {}
    for f in failures:
        out.setdefault(f["PatientID"], f["error"])
    return out


def log_failures(failures: Iterable[FailureRecord], logger: logging.Logger | None = None,
                 what: str = "excluded patient") -> None:
    """One ERROR line per record: ``<what> <PatientID> (<file>): <error>``."""
    logger = logger or logging.getLogger(__name__)
    for f in failures:
        where = f" ({f['file']})" if f.get("file") else ""
        logger.error("%s %s%s: %s", what, f["PatientID"], where, f["error"])
