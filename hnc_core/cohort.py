"""Read and validate a HECKTOR-2025-layout cohort.

Layout (one folder per patient, the Task-2 clinical CSV beside them)::

    COHORT/
      HECKTOR_2025_Training_Task_2.csv
      CHUM-001/CHUM-001__CT.nii.gz     CT in HU
      CHUM-001/CHUM-001__PT.nii.gz     PET in SUV, usually a coarser grid
      CHUM-001/CHUM-001.nii.gz         optional label on the CT grid: 0 bg, 1 GTVp, 2 GTVn

``load_cohort`` returns a :class:`Cohort` with every problem it found, one message per problem,
each naming the patient and the file. Patients stay in the cohort with their problems; callers
ask :meth:`Cohort.usable_ids` for the patients a task can use.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from hnc_core import schema
from hnc_core.failures import failure, reason_line
from hnc_core.ids import canonical_id

# What each task needs to be free of errors (and which files must exist).
TASK_REQUIREMENTS: dict[str, set[str]] = {
    "images": {"images"},
    "segmentation": {"images", "label"},
    "rfs": {"images", "clinical", "rfs"},
    "dm": {"images", "clinical", "dm"},
}


# Plausibility limits (documented in README "validate checks each patient for").
MIN_PET_OVERLAP = 0.5          # warn when PET covers less than this fraction of the CT's physical box
SPACING_RANGE_MM = (0.01, 100.0)  # voxel spacing outside this range (or <= 0) is refused
CT_ABS_LIMIT_HU = 1e5          # CT voxels beyond +-this are not HU from any scanner: refused
CT_AIR_HU = -500.0             # a head-and-neck CT always has air; no voxel below this -> not in HU?
PET_BQML_SUV = 200.0           # PET 99.9th percentile above this looks like Bq/mL, not SUV
NEAR_MISS_LABEL = ("seg", "gtv", "label", "mask", "roi", "contour")


class CohortError(ValueError):
    """Raised by ``load_cohort(collect=False)`` at the first error."""


@dataclass
class Problem:
    """One validation finding. ``affects`` says which tasks it rules out (see TASK_REQUIREMENTS)."""

    patient_id: str | None
    file: str | None
    code: str
    message: str
    severity: str = "error"  # "error" or "warning"
    affects: str = "images"  # "images" | "label" | "clinical" | "rfs" | "dm"

    def __str__(self) -> str:
        where = f"[{self.patient_id}]" if self.patient_id else "[cohort]"
        f = f" {self.file}:" if self.file else ""
        return f"{self.severity.upper()} {where}{f} {self.message}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PatientRecord:
    """Paths and clinical row of one patient (canonical hyphenated ID)."""

    patient_id: str
    folder: Path | None = None
    ct: Path | None = None
    pet: Path | None = None
    label: Path | None = None
    clinical: dict = field(default_factory=dict)

    @property
    def rfs_days(self) -> float | None:
        return _as_float(self.clinical.get(schema.RFS))

    @property
    def relapse(self) -> int | None:
        v = _as_float(self.clinical.get(schema.RELAPSE))
        return None if v is None else int(v)


@dataclass
class Cohort:
    """A validated cohort: patients, clinical table (indexed by canonical PatientID), problems."""

    root: Path
    patients: dict[str, PatientRecord]
    clinical: pd.DataFrame
    problems: list[Problem]
    clinical_csv: Path | None = None

    def problems_for(self, patient_id: str) -> list[Problem]:
        return [p for p in self.problems if p.patient_id == patient_id]

    def usable_ids(self, task: str = "images") -> list[str]:
        """Sorted IDs of patients with no error that rules out ``task``."""
        if task not in TASK_REQUIREMENTS:
            raise ValueError(f"unknown task {task!r}; choose from {sorted(TASK_REQUIREMENTS)}")
        need = TASK_REQUIREMENTS[task]
        bad = {p.patient_id for p in self.problems if p.severity == "error" and p.affects in need}
        ids = []
        for pid, rec in self.patients.items():
            if pid in bad or rec.ct is None or rec.pet is None:
                continue
            if task == "segmentation" and rec.label is None:
                continue
            if task in ("rfs", "dm") and pid not in self.clinical.index:
                continue
            if task == "dm" and _as_float(rec.clinical.get(schema.DM)) is None:
                continue
            ids.append(pid)
        return sorted(ids)

    def survival_outcome(self, ids: Iterable[str]) -> np.ndarray:
        """Structured array ``(event: bool, time: float days)`` as scikit-survival's ``Surv`` builds it."""
        from sksurv.util import Surv

        ids = list(ids)
        event = np.array([bool(self.patients[i].relapse) for i in ids])
        time = np.array([float(self.patients[i].rfs_days) for i in ids])
        return Surv.from_arrays(event=event, time=time, name_event="event", name_time="time")

    def exclusions(self, task: str, ids: Iterable[str] | None = None) -> list[dict]:
        """``{"PatientID", "file", "error"}`` for each patient (of ``ids``, default all) ``task`` cannot use."""
        usable = set(self.usable_ids(task))
        need = TASK_REQUIREMENTS[task]
        out = []
        for pid in sorted(self.patients if ids is None else ids):
            if pid in usable:
                continue
            probs = [p for p in self.problems_for(pid) if p.severity == "error" and p.affects in need]
            if probs:
                out.append(failure(pid, probs[0].file, "; ".join(
                    f"{Path(p.file).name if p.file else ''}: {p.message}".lstrip(": ") for p in probs)))
            else:
                out.append(failure(pid, None, f"not usable for task {task!r} (missing data)"))
        return out

    def clinical_missing_reason(self, patient_id: str) -> str | None:
        """Why ``patient_id`` has no usable clinical row (unreadable CSV, no CSV, no row), or None."""
        for p in self.problems_for(patient_id):
            if p.code in ("no_clinical", "not_in_csv"):
                return f"{p.message} ({p.file})" if p.file else p.message
        if patient_id not in self.clinical.index:
            return "no clinical row"
        return None

    def summary(self) -> dict:
        n_err = sum(p.severity == "error" for p in self.problems)
        return {
            "root": str(self.root),
            "n_patients": len(self.patients),
            "n_with_label": sum(r.label is not None for r in self.patients.values()),
            "n_clinical_rows": int(len(self.clinical)),
            "usable": {task: len(self.usable_ids(task)) for task in TASK_REQUIREMENTS},
            "n_errors": n_err,
            "n_warnings": len(self.problems) - n_err,
        }

    def to_dict(self) -> dict:
        usable = {t: set(self.usable_ids(t)) for t in TASK_REQUIREMENTS}
        return {
            "summary": self.summary(),
            "cohort_problems": [p.to_dict() for p in self.problems if p.patient_id is None],
            "patients": [
                {
                    "PatientID": pid,
                    "usable_for": [t for t in TASK_REQUIREMENTS if pid in usable[t]],
                    "files": {k: (str(getattr(rec, k)) if getattr(rec, k) else None) for k in ("ct", "pet", "label")},
                    "problems": [p.to_dict() for p in self.problems_for(pid)],
                }
                for pid, rec in sorted(self.patients.items())
            ],
        }


# --------------------------------------------------------------------------------------------- reading


def load_cohort(
    root: str | Path,
    clinical_csv: str | Path | None = None,
    *,
    collect: bool = True,
    check_images: bool = True,
    progress: bool = False,
) -> Cohort:
    """Discover patients under ``root``, read the clinical CSV and validate everything.

    Args:
        root: cohort folder in the HECKTOR 2025 layout.
        clinical_csv: clinical table; default ``root/HECKTOR_2025_Training_Task_2.csv`` or the single
            CSV in ``root`` that has a ``PatientID`` column.
        collect: gather every problem (True) or raise :class:`CohortError` at the first error.
        check_images: read every image and check contents and geometry (slower, thorough).
        progress: show a progress bar while images are checked.
    """
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"cohort folder does not exist: {root}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise CohortError(f"cannot read cohort folder {root}: permission denied")
    sink = _ProblemSink(collect)
    patients = _discover_patients(root, sink)
    csv_path = _find_clinical_csv(root, clinical_csv, sink)
    clinical = _read_clinical(csv_path, patients, sink) if csv_path else None
    if clinical is None:  # no CSV or an unreadable one: say so for every patient, not once for the cohort
        reason = next((p.message for p in sink.problems if p.patient_id is None and p.affects == "clinical"
                       and p.code in ("no_clinical_csv", "unreadable_csv", "no_patient_id")),
                      "no clinical CSV")
        for pid, rec in sorted(patients.items()):
            if rec.folder is not None:
                sink.add(pid, csv_path or root, "no_clinical", f"clinical data unavailable: {reason}",
                         affects="clinical")
        clinical = _empty_clinical()

    if check_images:
        items = sorted(patients.values(), key=lambda r: r.patient_id)
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc="validating images", unit="patient")
        for rec in items:
            if rec.folder is not None:
                _check_images(rec, sink)
    return Cohort(root=root, patients=patients, clinical=clinical, problems=sink.problems, clinical_csv=csv_path)


class _ProblemSink:
    def __init__(self, collect: bool):
        self.collect = collect
        self.problems: list[Problem] = []

    def add(self, patient_id, file, code, message, severity="error", affects="images") -> None:
        p = Problem(patient_id, str(file) if file is not None else None, code, message, severity, affects)
        if severity == "error" and not self.collect:
            raise CohortError(str(p))
        self.problems.append(p)


def _stem(f: Path) -> str:
    return f.name[: -len(".nii.gz")] if f.name.lower().endswith(".nii.gz") else f.name[: -len(".nii")]


def _niftis(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.name.lower().endswith((".nii.gz", ".nii")))


def _near_miss(f: Path, pid: str) -> str:
    """What an unrecognised file in ``pid``'s folder probably is, as a hint naming the expected file."""
    if not f.name.endswith((".nii.gz", ".nii")):
        return f"{f.name}: extension in the wrong case (expected .nii.gz); ignored"
    stem = _stem(f)
    m = re.match(r"^(.*?)([_-]{1,2})([A-Za-z]+)$", stem)
    head, tail = (m.group(1), m.group(3)) if m else (stem, "")
    same = canonical_id(head).upper() == pid.upper()
    t = tail.lower()
    if t in ("ct", "pt", "pet") and not same:
        return f"{f.name} belongs to another patient ({canonical_id(head)}): a folder holding another patient's files?"
    if t == "ct":
        return f"{f.name} looks like the CT but is not named {pid}__CT.nii.gz (case and '__' matter); ignored"
    if t in ("pt", "pet"):
        return f"{f.name} looks like the PET but is not named {pid}__PT.nii.gz (case and '__' matter); ignored"
    if any(k in t for k in NEAR_MISS_LABEL):
        return f"{f.name} looks like a label, but labels are named {pid}.nii.gz; it is ignored"
    return ""  # an unrelated extra (RTDOSE, registration, ...): ignored without a word


def _discover_patients(root: Path, sink: _ProblemSink) -> dict[str, PatientRecord]:
    patients: dict[str, PatientRecord] = {}
    for folder in sorted(root.iterdir()):
        if folder.name.startswith("."):
            continue  # hidden: caches, staging folders
        if folder.is_symlink() and not folder.exists():
            if "." in folder.name:  # a file such as the CSV
                sink.add(None, folder, "broken_symlink", f"{folder.name} is a broken symbolic link (to "
                         f"{os.readlink(folder)})", severity="warning", affects="clinical")
                continue
            pid = canonical_id(folder.name)
            sink.add(pid, folder, "broken_symlink",
                     f"{folder.name} is a broken symbolic link (to {os.readlink(folder)}); fix or remove it")
            patients.setdefault(pid, PatientRecord(patient_id=pid, folder=folder))
            continue
        if not folder.is_dir():
            continue
        pid = canonical_id(folder.name)
        try:
            niftis = _niftis(folder)
        except PermissionError:
            sink.add(pid, folder, "permission_denied",
                     f"cannot list patient folder {folder.name}: permission denied (check the folder's permissions)")
            patients.setdefault(pid, PatientRecord(patient_id=pid, folder=folder))
            continue
        if not niftis:
            try:
                deeper = [f for f in sorted(folder.glob("*/*.nii*"))
                          if canonical_id(_stem(f).split("__")[0]) == pid or canonical_id(f.parent.name) == pid]
            except PermissionError:
                deeper = []
            if deeper:  # e.g. CHUM-001/CHUM-001/CHUM-001__CT.nii.gz
                sink.add(pid, deeper[0].parent, "too_deep",
                         f"no images directly in {folder.name}/, but {len(deeper)} NIfTI file(s) one level deeper "
                         f"in {deeper[0].parent.relative_to(root)}/: move them up into {folder.name}/")
                patients.setdefault(pid, PatientRecord(patient_id=pid, folder=folder))
            continue  # otherwise not a patient folder (reports, caches, ...)
        rec = PatientRecord(patient_id=pid, folder=folder)
        if pid in patients:
            sink.add(pid, folder, "duplicate_id",
                     f"two patient folders map to ID {pid}: {patients[pid].folder.name} and {folder.name}")
            continue
        cts, pets, labels, unknown = [], [], [], []
        for f in niftis:
            stem = _stem(f)
            if not f.name.endswith((".nii.gz", ".nii")):
                unknown.append(f)
            elif stem.endswith("__CT") and canonical_id(stem[:-4]) == pid:
                cts.append(f)
            elif stem.endswith("__PT") and canonical_id(stem[:-4]) == pid:
                pets.append(f)
            elif "__" not in stem and canonical_id(stem) == pid:
                labels.append(f)
            else:
                unknown.append(f)
        hints = {f: _near_miss(f, pid) for f in unknown}
        for kind, found, attr in (("CT", cts, "ct"), ("PET", pets, "pet")):
            if not found:
                expected = folder / f"{folder.name}__{'CT' if kind == 'CT' else 'PT'}.nii.gz"
                near = [h for h in hints.values() if f"the {kind}" in h or "another patient" in h]
                extra = f"; found instead: {'; '.join(near)}" if near else ""
                sink.add(pid, expected, f"missing_{attr}", f"missing {kind} image (expected {expected.name}){extra}")
            elif len(found) > 1:
                sink.add(pid, folder, f"ambiguous_{attr}", f"{len(found)} {kind} files: {[f.name for f in found]}")
            else:
                setattr(rec, attr, found[0])
        for f, hint in hints.items():
            if hint:
                sink.add(pid, f, "unrecognised_file", hint, severity="warning",
                         affects="label" if "label" in hint else "images")
        if len(labels) > 1:
            sink.add(pid, folder, "ambiguous_label", f"{len(labels)} label files: {[f.name for f in labels]}",
                     affects="label")
        elif labels:
            rec.label = labels[0]
        patients[pid] = rec
    return patients


def _find_clinical_csv(root: Path, explicit, sink: _ProblemSink) -> Path | None:
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise CohortError(f"clinical CSV not found: {p}")
        return p
    default = root / schema.CLINICAL_CSV_NAME
    if default.is_file():
        return default
    candidates = []
    for p in sorted(root.glob("*.csv")):
        if p.name == schema.GROUND_TRUTH_CSV_NAME:
            continue
        try:
            cols = read_clinical_table(p)[0].columns
        except Exception:  # noqa: BLE001 - unreadable CSVs are just not candidates
            continue
        if schema.PATIENT_ID in cols:
            candidates.append(p)
    if len(candidates) == 1:
        return candidates[0]
    msg = (f"no clinical CSV ({schema.CLINICAL_CSV_NAME}) in {root}" if not candidates
           else f"several clinical CSVs in {root}: {[c.name for c in candidates]}; pass one explicitly")
    sink.add(None, root, "no_clinical_csv", msg, severity="warning", affects="clinical")
    return None


def _empty_clinical() -> pd.DataFrame:
    return pd.DataFrame(columns=schema.CLINICAL_COLUMNS[1:]).rename_axis(schema.PATIENT_ID)


class CsvProblem(ValueError):
    """The clinical table cannot be read as a CSV (message names the file and the reason)."""


def read_clinical_table(csv_path: str | Path) -> tuple[pd.DataFrame, list[int], list[str]]:
    """Read a clinical CSV tolerantly but never silently.

    Returns ``(df, line_numbers, notes)``: every cell as text (``None`` when blank), the 1-based file line of
    each row, and notes on what was tolerated (encoding fallback, separator, comment/blank lines). Raises
    :class:`CsvProblem` for an Excel file renamed to ``.csv`` or text that is not a table.
    """
    import csv
    import io

    csv_path = Path(csv_path)
    try:
        raw = csv_path.read_bytes()
    except PermissionError:
        raise CsvProblem(f"cannot read {csv_path.name}: permission denied") from None
    except OSError as exc:
        raise CsvProblem(f"cannot read {csv_path.name}: {exc.strerror}") from None
    if raw[:4] == b"PK\x03\x04":
        raise CsvProblem(f"{csv_path.name} is an Excel workbook (.xlsx) or other zip file, not a CSV: "
                         "export it from Excel as 'CSV UTF-8'")
    if raw[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise CsvProblem(f"{csv_path.name} is a legacy Excel workbook (.xls), not a CSV: export it as CSV")
    if b"\x00" in raw[:4096]:
        raise CsvProblem(f"{csv_path.name} is binary (or UTF-16) data, not a UTF-8/latin-1 CSV")
    notes = []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = raw.decode("cp1252", errors="replace") if b"\x81" not in raw else raw.decode("latin-1")
        line = raw[: exc.start].count(b"\n") + 1
        notes.append(f"{csv_path.name} is not UTF-8 (first bad byte on line {line}); read as latin-1/cp1252")
    lines = text.splitlines()
    kept, numbers, n_comment = [], [], 0
    for i, ln in enumerate(lines, 1):
        st = ln.strip()
        if st.startswith("#"):
            n_comment += 1
            continue
        if not st or not st.strip(",;\t ").strip():
            continue  # blank, or only separators
        kept.append(ln)
        numbers.append(i)
    if n_comment:
        notes.append(f"{csv_path.name}: {n_comment} comment line(s) starting with '#' ignored")
    if not kept:
        raise CsvProblem(f"{csv_path.name} is empty")
    header = kept[0]
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    sep = max(counts, key=counts.get)
    if counts[sep] == 0:
        raise CsvProblem(f"{csv_path.name}: header line {header[:80]!r} has no ',', ';' or tab separator")
    if sep != ",":
        notes.append(f"{csv_path.name} uses {'tab' if sep == chr(9) else repr(sep)} as separator (read as such)")
    try:
        df = pd.read_csv(io.StringIO("\n".join(kept)), sep=sep, dtype=str, keep_default_na=False,
                         skip_blank_lines=False, quoting=csv.QUOTE_MINIMAL)
    except Exception as exc:  # noqa: BLE001 - pandas raises several types for malformed text
        raise CsvProblem(f"{csv_path.name} is not a readable table with separator {sep!r}: "
                         f"{str(exc).strip().splitlines()[-1][:200]}") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(lambda col: col.map(lambda v: None if v is None or str(v).strip() == "" else str(v).strip()))
    return df, numbers[1:], notes


def _to_number(v):
    """Cell text -> float where it is a plain number, else the text (checked per column later)."""
    if v is None:
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _read_clinical(csv_path: Path, patients: dict[str, PatientRecord], sink: _ProblemSink) -> pd.DataFrame | None:
    try:
        df, line_no, notes = read_clinical_table(csv_path)
    except CsvProblem as exc:
        sink.add(None, csv_path, "unreadable_csv", f"cannot read clinical CSV: {exc}", affects="clinical")
        return None
    for note in notes:
        sink.add(None, csv_path, "csv_format", note, severity="warning", affects="clinical")
    if schema.PATIENT_ID not in df.columns:
        sink.add(None, csv_path, "no_patient_id",
                 f"clinical CSV {csv_path.name} has no {schema.PATIENT_ID} column (columns read: "
                 f"{list(df.columns)[:6]}); check the header and the separator", affects="clinical")
        return None
    no_id = [line_no[i] for i in range(len(df)) if df[schema.PATIENT_ID].iloc[i] is None]
    if no_id:
        sink.add(None, csv_path, "row_without_id", f"{len(no_id)} row(s) without a {schema.PATIENT_ID} ignored "
                 f"(lines {no_id[:10]})", severity="warning", affects="clinical")
    keep = df[schema.PATIENT_ID].notna().to_numpy()
    line_no = [n for n, k in zip(line_no, keep) if k]
    df = df[keep].reset_index(drop=True)
    for c in df.columns:
        if c not in (schema.PATIENT_ID, schema.M_STAGE):
            df[c] = df[c].map(_to_number)
            if all(isinstance(v, float) for v in df[c]):
                col = df[c].astype(float)
                integral = bool(len(col)) and bool(np.isfinite(col).all()) and bool((col == np.round(col)).all())
                df[c] = col.astype(np.int64) if integral else col
    if schema.DM not in df.columns:
        sink.add(None, csv_path, "no_dm_column",
                 f"clinical CSV has no {schema.DM} column: no patient is usable for the DM task "
                 "(it needs 0/1 distant-metastasis labels; HECKTOR does not provide them)",
                 severity="warning", affects="dm")
    missing_cols = [c for c in schema.CLINICAL_COLUMNS if c not in df.columns]
    if missing_cols:
        sink.add(None, csv_path, "missing_columns", f"clinical CSV lacks columns {missing_cols}",
                 severity="warning", affects="clinical")
        for c in missing_cols:
            df[c] = np.nan
    df[schema.PATIENT_ID] = df[schema.PATIENT_ID].map(canonical_id)
    dup = df[schema.PATIENT_ID].duplicated(keep=False)
    for pid in sorted(set(df.loc[dup, schema.PATIENT_ID])):
        rows = [line_no[int(i)] for i in df.index[df[schema.PATIENT_ID] == pid]]  # file lines, 1-based
        sink.add(pid, csv_path, "duplicate_id", f"PatientID {pid} appears on CSV lines {rows}", affects="clinical")
    df = df.drop_duplicates(schema.PATIENT_ID, keep="first").set_index(schema.PATIENT_ID)

    for pid, row in df.iterrows():
        _check_clinical_row(pid, row, csv_path, sink)
        if pid in patients:
            patients[pid].clinical = row.to_dict()
        else:
            patients[pid] = PatientRecord(patient_id=pid, clinical=row.to_dict())
            sink.add(pid, csv_path, "no_images", f"patient {pid} is in the clinical CSV but has no image folder")
    for pid, rec in patients.items():
        if rec.folder is not None and pid not in df.index:
            sink.add(pid, csv_path, "not_in_csv", f"patient {pid} has images but no row in the clinical CSV",
                     affects="clinical")
    return df


def _check_clinical_row(pid: str, row: pd.Series, csv_path: Path, sink: _ProblemSink) -> None:
    raw_rfs, raw_rel = row.get(schema.RFS), row.get(schema.RELAPSE)
    rfs, relapse = _as_float(raw_rfs), _as_float(raw_rel)
    if _is_missing(raw_rel):
        sink.add(pid, csv_path, "missing_relapse", "Relapse is missing", affects="rfs")
    elif relapse is None or relapse not in (0.0, 1.0):
        sink.add(pid, csv_path, "bad_relapse", f"Relapse must be 0 (censored) or 1 (relapse), got {raw_rel!r}",
                 affects="rfs")
    if _is_missing(raw_rfs):
        what = "with Relapse=1 (event time unknown)" if relapse == 1 else "(follow-up time unknown)"
        sink.add(pid, csv_path, "missing_rfs", f"RFS is missing {what}", affects="rfs")
    elif rfs is None:
        hint = (" (a thousands separator or decimal comma? write plain numbers such as 1214)"
                if isinstance(raw_rfs, str) and re.search(r"\d[,.' ]\d", raw_rfs) else "")
        sink.add(pid, csv_path, "bad_rfs", f"RFS {raw_rfs!r} is not a number of days{hint}", affects="rfs")
    elif not math.isfinite(rfs):
        sink.add(pid, csv_path, "bad_rfs", f"RFS must be a finite number of days, got {raw_rfs!r}", affects="rfs")
    elif rfs < 0:
        sink.add(pid, csv_path, "negative_rfs", f"RFS is negative ({rfs:g} days)", affects="rfs")
    age = _as_float(row.get(schema.AGE))
    if row.get(schema.AGE) is not None and not _is_missing(row.get(schema.AGE)) and (age is None or not 0 < age < 120):
        sink.add(pid, csv_path, "bad_age", f"Age {row.get(schema.AGE)!r} is not a plausible age in years; "
                 "treated as missing", severity="warning", affects="clinical")
    for col, codes in schema.CATEGORICAL_CODES.items():
        if col not in row.index:
            continue
        value = row[col]
        if _is_missing(value):
            continue
        norm = _normalise_code(value)
        if norm not in codes:
            allowed = sorted(codes, key=str)
            if col == schema.DM:
                sink.add(pid, csv_path, "unknown_code", f"{col} = {value!r} is not one of {allowed}", affects="dm")
            else:
                sink.add(pid, csv_path, "unknown_code",
                         f"{col} = {value!r} is not one of {allowed}; treated as Unknown",
                         severity="warning", affects="clinical")


def _check_images(rec: PatientRecord, sink: _ProblemSink) -> None:
    """Voxel checks of one patient; findings replayed from :mod:`hnc_core.check_memo` when its files are
    unchanged since they were last checked."""
    from hnc_core import check_memo

    files = [(attr, Path(getattr(rec, attr))) for attr in ("ct", "pet", "label") if getattr(rec, attr) is not None]
    thresholds = {"ct_abs": CT_ABS_LIMIT_HU, "ct_air": CT_AIR_HU, "pet_bqml": PET_BQML_SUV,
                  "min_overlap": MIN_PET_OVERLAP, "spacing": list(SPACING_RANGE_MM)}
    seen = check_memo.lookup(files, thresholds)
    if seen is not None:
        for p in seen:
            sink.add(p["patient_id"], p["file"], p["code"], p["message"], p["severity"], p["affects"])
        return
    n0 = len(sink.problems)
    _check_images_now(rec, sink)
    check_memo.store(files, thresholds, [dataclasses.asdict(p) for p in sink.problems[n0:]])


def _check_images_now(rec: PatientRecord, sink: _ProblemSink) -> None:
    pid = rec.patient_id
    images = {}
    for attr, affects in (("ct", "images"), ("pet", "images"), ("label", "label")):
        path = getattr(rec, attr)
        if path is None:
            continue
        try:
            img, arr = _read_checked(path)
        except _ImageProblem as exc:
            sink.add(pid, path, exc.code, exc.message, affects=affects)
            continue
        images[attr] = (img, arr)
    stats = {k: _intensity_stats(images[k][1]) for k in ("ct", "pet") if k in images}
    if "ct" in stats and "pet" in stats and _looks_swapped(stats["ct"], stats["pet"]):
        sink.add(pid, rec.ct, "swapped_ct_pet",
                 f"CT and PET look swapped: {rec.ct.name} holds {_fmt_range(stats['ct'])} (no air, PET-like) and "
                 f"{rec.pet.name} holds {_fmt_range(stats['pet'])} (HU-like); exchange the two file names")
    else:
        if "ct" in stats:
            _check_ct_values(pid, rec.ct, stats["ct"], sink)
        if "pet" in stats:
            _check_pet_values(pid, rec.pet, stats["pet"], sink)

    if "ct" in images and "pet" in images:
        overlap = overlap_fraction(images["ct"][0], images["pet"][0])
        if overlap <= 0:
            sink.add(pid, rec.pet, "no_overlap", "PET and CT do not overlap in physical space "
                     f"(CT box {_fmt_box(images['ct'][0])}, PET box {_fmt_box(images['pet'][0])})")
        elif overlap < MIN_PET_OVERLAP:
            sink.add(pid, rec.pet, "small_overlap",
                     f"PET covers only {100 * overlap:.1f}% of the CT's physical box (warning below "
                     f"{100 * MIN_PET_OVERLAP:.0f}%): outside it the PET channel on the CT grid is 0 "
                     f"(CT box {_fmt_box(images['ct'][0])}, PET box {_fmt_box(images['pet'][0])})",
                     severity="warning")
    if "label" in images:
        lab, arr = images["label"]
        if "ct" in images:
            mismatch = grid_mismatch(images["ct"][0], lab)
            if mismatch:
                sink.add(pid, rec.label, "label_grid", f"label is not on the CT grid: {mismatch}", affects="label")
        bad = label_value_problem(arr)
        if bad:
            sink.add(pid, rec.label, "label_values", bad, affects="label")
        elif not np.any(arr):
            sink.add(pid, rec.label, "empty_label", "label is empty (no GTVp or GTVn voxel): a training case "
                     "with no tumour; remove the file if the contour is missing", severity="warning",
                     affects="label")


def label_value_problem(arr: np.ndarray, allowed=(0, 1, 2)) -> str:
    """'' when ``arr`` is an integer label map with values in ``allowed``; else what is wrong."""
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            return f"{int(arr.size - finite.sum())} NaN/inf voxels in a label map"
        if not np.array_equal(arr, np.round(arr)):
            return (f"label map holds non-integer values (range {float(arr.min()):g}..{float(arr.max()):g}): "
                    "a probability map? threshold it into 0/1/2 first")
    flat = arr.ravel(order="K")  # no copy for nibabel's Fortran-ordered arrays
    lo, hi = flat.min(initial=0), flat.max(initial=0)
    if set(allowed) >= set(range(int(lo), int(hi) + 1)):
        return ""
    bad = np.unique(flat[~np.isin(flat, allowed)]).tolist()
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:8])
        return f"label values outside {{{','.join(map(str, allowed))}}}: {shown}"
    return ""


def _intensity_stats(arr: np.ndarray) -> dict:
    flat = np.asarray(arr).ravel(order="K")  # no copy for nibabel's Fortran-ordered arrays
    sub = flat[:: max(1, flat.size // 500_000)].astype(np.float64)
    p1, p999 = np.percentile(sub, [1, 99.9]) if sub.size else (0.0, 0.0)
    return {"min": float(flat.min()), "max": float(flat.max()), "p1": float(p1), "p999": float(p999),
            "nonzero": bool(np.any(flat))}


def _fmt_range(st: dict) -> str:
    return f"values {st['min']:.4g}..{st['max']:.4g} (1st percentile {st['p1']:.4g})"


def _looks_swapped(ct: dict, pet: dict) -> bool:
    return ct["p1"] >= -1.0 and ct["max"] < PET_BQML_SUV * 10 and pet["p1"] < CT_AIR_HU


def _check_ct_values(pid, path, st: dict, sink: _ProblemSink) -> None:
    if st["min"] < -CT_ABS_LIMIT_HU or st["max"] > CT_ABS_LIMIT_HU:
        sink.add(pid, path, "implausible_ct", f"CT {_fmt_range(st)} are outside any plausible HU range "
                 f"(|HU| <= {CT_ABS_LIMIT_HU:g}): raw or corrupt values, not Hounsfield units")
    elif st["p1"] > CT_AIR_HU:
        sink.add(pid, path, "ct_not_hu", f"CT {_fmt_range(st)}: no air (nothing below {CT_AIR_HU:g} HU); stored "
                 "values without the DICOM rescale (e.g. uint16 with intercept -1024)?", severity="warning")


def _check_pet_values(pid, path, st: dict, sink: _ProblemSink) -> None:
    if not st["nonzero"]:
        sink.add(pid, path, "empty_pet", "PET is all zeros")
    elif st["p999"] > PET_BQML_SUV:
        sink.add(pid, path, "pet_not_suv", f"PET {_fmt_range(st)}, 99.9th percentile {st['p999']:.4g}: looks like "
                 f"Bq/mL, not SUV (SUV above {PET_BQML_SUV:g} is implausible); convert to SUV "
                 "(body-weight SUV = Bq/mL x weight g / decay-corrected dose Bq)", severity="warning")
    elif st["p1"] < -50:
        sink.add(pid, path, "pet_negative", f"PET {_fmt_range(st)}: strongly negative values are not SUV",
                 severity="warning")


class _ImageProblem(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _raw_pixdim(path: Path) -> np.ndarray | None:
    """pixdim[1:4] exactly as stored (nibabel's loader silently replaces 0 by 1 and negatives by abs)."""
    import gzip

    import nibabel as nib

    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            hdr = nib.Nifti1Header.from_fileobj(f, check=False)
        return np.asarray(hdr["pixdim"][1:4], float)
    except Exception:  # noqa: BLE001 - the full read below reports unreadable files
        return None


def _itk_reason(exc: Exception) -> str:
    return reason_line(exc, limit=200)


def _read_checked(path: Path):
    """Header via SimpleITK (geometry) and voxels via nibabel.

    nibabel is used for the voxels because it raises on truncated gzip streams and keeps NaN,
    where ITK's NIfTI reader silently zero-fills both.
    """
    import nibabel as nib
    import SimpleITK as sitk

    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise _ImageProblem("broken_symlink", f"broken symbolic link (points to {os.readlink(path)}, which does "
                            "not exist)")
    if not os.access(path, os.R_OK):
        raise _ImageProblem("permission_denied", "cannot open the file: permission denied (check its permissions)")
    size = path.stat().st_size
    if size == 0:
        raise _ImageProblem("empty_file", "file is empty (0 bytes): an interrupted copy or export?")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as exc:  # noqa: BLE001
        reason = _itk_reason(exc)
        if "orthonormal" in reason:
            raise _ImageProblem("sheared_affine", f"the header's affine is sheared or not orthonormal, which ITK "
                                f"cannot represent (ITK: {reason}); resample the image to an orthonormal grid"
                                ) from None
        raise _ImageProblem("unreadable", f"cannot read NIfTI header (corrupt or truncated?): {reason}") from None
    dims = reader.GetDimension()
    if dims != 3 or reader.GetNumberOfComponents() != 1:
        raise _ImageProblem("not_3d_scalar", f"expected a 3D scalar image, got a {dims}D image of size "
                            f"{reader.GetSize()} with {reader.GetNumberOfComponents()} component(s) in this file; "
                            "a dynamic/4D series or an RGB export? keep one 3D frame")
    pixdim = _raw_pixdim(path)
    spacing = np.array(reader.GetSpacing(), float)
    if pixdim is not None and dims >= 3 and (not np.all(np.isfinite(pixdim[:3])) or np.any(pixdim[:3] <= 0)):
        raise _ImageProblem("bad_spacing", f"non-positive or non-finite voxel spacing in the header "
                            f"(pixdim {_fmt(pixdim[:3])} mm); readers silently substitute 1 mm or |spacing|")
    lo, hi = SPACING_RANGE_MM
    if np.any(~np.isfinite(spacing)) or np.any(spacing[:3] <= 0) or np.any(spacing[:3] < lo) or \
            np.any(spacing[:3] > hi):
        raise _ImageProblem("bad_spacing", f"implausible voxel spacing {_fmt(spacing[:3])} mm "
                            f"(accepted {lo:g}..{hi:g} mm)")
    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as exc:  # noqa: BLE001 - readers raise many types for corrupt files
        raise _ImageProblem("unreadable", f"cannot read the voxels (corrupt or truncated file?): "
                            f"{_itk_reason(exc)}") from None
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or data.ndim != 3:
        raise _ImageProblem("not_3d_scalar", f"expected a 3D scalar image, got shape {data.shape} "
                            f"({reader.GetDimension()}D, {reader.GetNumberOfComponents()} component(s)) in this "
                            "file; a dynamic/4D series? keep one 3D frame")
    if np.issubdtype(data.dtype, np.floating):
        n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if n_bad:
            raise _ImageProblem("non_finite", f"{n_bad} NaN/inf voxels")
    return reader, data


class ImageReadError(ValueError):
    """A NIfTI file that the strict reader refuses; the message names the file and the reason."""

    def __init__(self, path, code: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path, self.code, self.reason = str(path), code, message


def read_image_checked(path: str | Path, label: bool = False, allowed=(0, 1, 2)):
    """Read a NIfTI as a SimpleITK image after the checks ``validate`` runs (truncation, NaN, spacing, ...).

    ``label=True`` also refuses float probability maps, NaN and values outside ``allowed``.
    Raises :class:`ImageReadError`.
    """
    import SimpleITK as sitk

    path = Path(path)
    try:
        _, data = _read_checked(path)
    except _ImageProblem as exc:
        raise ImageReadError(path, exc.code, exc.message) from None
    if label:
        bad = label_value_problem(data, allowed)
        if bad:
            raise ImageReadError(path, "label_values", bad)
    return sitk.ReadImage(str(path))


# ------------------------------------------------------------------------------------------- geometry


def physical_box(img) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical bounding box (mm) of the voxel extent (voxel edges, not centres).

    ``img`` is a SimpleITK Image or an ImageFileReader after ``ReadImageInformation``.
    """
    size = np.array(img.GetSize(), float)
    spacing = np.array(img.GetSpacing(), float)
    direction = np.array(img.GetDirection(), float).reshape(3, 3)
    origin = np.array(img.GetOrigin(), float)
    corners = []
    for i in range(8):
        idx = np.array([(-0.5 if (i >> a) & 1 == 0 else size[a] - 0.5) for a in range(3)])
        corners.append(origin + direction @ (idx * spacing))
    c = np.array(corners)
    return c.min(0), c.max(0)


def overlap_fraction(a, b) -> float:
    """Fraction of ``a``'s physical box that ``b``'s box covers (0 = disjoint)."""
    lo_a, hi_a = physical_box(a)
    lo_b, hi_b = physical_box(b)
    inter = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None)
    vol_a = float(np.prod(hi_a - lo_a))
    return float(np.prod(inter)) / vol_a if vol_a > 0 else 0.0


def grid_mismatch(ref, img, tol: float = 1e-3) -> str:
    """Describe how ``img``'s voxel grid differs from ``ref``'s ('' when the same)."""
    out = []
    if ref.GetSize() != img.GetSize():
        out.append(f"size {img.GetSize()} vs CT {ref.GetSize()}")
    if not np.allclose(ref.GetSpacing(), img.GetSpacing(), rtol=tol, atol=tol):
        out.append(f"spacing {_fmt(img.GetSpacing())} vs CT {_fmt(ref.GetSpacing())} mm")
    if not np.allclose(ref.GetOrigin(), img.GetOrigin(), atol=tol * max(ref.GetSpacing()) * 10):
        out.append(f"origin {_fmt(img.GetOrigin())} vs CT {_fmt(ref.GetOrigin())} mm")
    if not np.allclose(ref.GetDirection(), img.GetDirection(), atol=1e-4):
        out.append("direction differs")
    return "; ".join(out)


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in v) + ")"


def _fmt_box(img) -> str:
    lo, hi = physical_box(img)
    return f"{_fmt(lo)}-{_fmt(hi)}"


# --------------------------------------------------------------------------------------------- values


def _is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip() == ""


def _as_float(v) -> float | None:
    if _is_missing(v):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _normalise_code(v):
    """1.0 -> 1, '1' -> 1, ' M0 ' -> 'M0'."""
    if isinstance(v, str):
        s = v.strip()
        try:
            f = float(s)
        except ValueError:
            return s
        v = f
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def normalise_code(v):
    """Public form of the categorical-code normaliser (missing -> None)."""
    return None if _is_missing(v) else _normalise_code(v)
