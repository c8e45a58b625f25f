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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from hnc_core import schema
from hnc_core.ids import canonical_id

# What each task needs to be free of errors (and which files must exist).
TASK_REQUIREMENTS: dict[str, set[str]] = {
    "images": {"images"},
    "segmentation": {"images", "label"},
    "rfs": {"images", "clinical", "rfs"},
    "dm": {"images", "clinical", "dm"},
}


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
    sink = _ProblemSink(collect)
    patients = _discover_patients(root, sink)
    csv_path = _find_clinical_csv(root, clinical_csv, sink)
    clinical = _read_clinical(csv_path, patients, sink) if csv_path else _empty_clinical()

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


def _discover_patients(root: Path, sink: _ProblemSink) -> dict[str, PatientRecord]:
    patients: dict[str, PatientRecord] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        niftis = sorted(folder.glob("*.nii.gz")) + sorted(folder.glob("*.nii"))
        if not niftis:
            continue  # not a patient folder (reports, caches, ...)
        pid = canonical_id(folder.name)
        rec = PatientRecord(patient_id=pid, folder=folder)
        if pid in patients:
            sink.add(pid, folder, "duplicate_id",
                     f"two patient folders map to ID {pid}: {patients[pid].folder.name} and {folder.name}")
            continue
        cts, pets, labels = [], [], []
        for f in niftis:
            stem = f.name[: -len(".nii.gz")] if f.name.endswith(".nii.gz") else f.name[: -len(".nii")]
            if stem.endswith("__CT"):
                (cts if canonical_id(stem[:-4]) == pid else []).append(f)
            elif stem.endswith("__PT"):
                (pets if canonical_id(stem[:-4]) == pid else []).append(f)
            elif "__" not in stem and canonical_id(stem) == pid:
                labels.append(f)
        for kind, found, attr in (("CT", cts, "ct"), ("PET", pets, "pet")):
            if not found:
                expected = folder / f"{folder.name}__{'CT' if kind == 'CT' else 'PT'}.nii.gz"
                sink.add(pid, expected, f"missing_{attr}", f"missing {kind} image (expected {expected.name})")
            elif len(found) > 1:
                sink.add(pid, folder, f"ambiguous_{attr}", f"{len(found)} {kind} files: {[f.name for f in found]}")
            else:
                setattr(rec, attr, found[0])
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
            cols = pd.read_csv(p, nrows=0).columns
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


def _read_clinical(csv_path: Path, patients: dict[str, PatientRecord], sink: _ProblemSink) -> pd.DataFrame:
    try:
        df = pd.read_csv(csv_path, dtype={schema.PATIENT_ID: str, schema.M_STAGE: str})
    except Exception as exc:  # noqa: BLE001
        sink.add(None, csv_path, "unreadable_csv", f"cannot read clinical CSV: {exc}", affects="clinical")
        return _empty_clinical()
    if schema.PATIENT_ID not in df.columns:
        sink.add(None, csv_path, "no_patient_id", f"clinical CSV has no {schema.PATIENT_ID} column",
                 affects="clinical")
        return _empty_clinical()
    missing_cols = [c for c in schema.CLINICAL_COLUMNS if c not in df.columns]
    if missing_cols:
        sink.add(None, csv_path, "missing_columns", f"clinical CSV lacks columns {missing_cols}",
                 severity="warning", affects="clinical")
        for c in missing_cols:
            df[c] = np.nan
    df[schema.PATIENT_ID] = df[schema.PATIENT_ID].map(canonical_id)
    dup = df[schema.PATIENT_ID].duplicated(keep=False)
    for pid in sorted(set(df.loc[dup, schema.PATIENT_ID])):
        rows = [int(i) + 2 for i in df.index[df[schema.PATIENT_ID] == pid]]  # 1-based + header
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
    rfs, relapse = _as_float(row.get(schema.RFS)), _as_float(row.get(schema.RELAPSE))
    if relapse is None:
        sink.add(pid, csv_path, "missing_relapse", "Relapse is missing", affects="rfs")
    elif relapse not in (0.0, 1.0):
        sink.add(pid, csv_path, "bad_relapse", f"Relapse must be 0 or 1, got {row.get(schema.RELAPSE)!r}",
                 affects="rfs")
    if rfs is None:
        what = "with Relapse=1 (event time unknown)" if relapse == 1 else "(follow-up time unknown)"
        sink.add(pid, csv_path, "missing_rfs", f"RFS is missing {what}", affects="rfs")
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

    if "ct" in images and "pet" in images:
        overlap = overlap_fraction(images["ct"][0], images["pet"][0])
        if overlap <= 0:
            sink.add(pid, rec.pet, "no_overlap", "PET and CT do not overlap in physical space "
                     f"(CT box {_fmt_box(images['ct'][0])}, PET box {_fmt_box(images['pet'][0])})")
    if "label" in images:
        lab, arr = images["label"]
        if "ct" in images:
            mismatch = grid_mismatch(images["ct"][0], lab)
            if mismatch:
                sink.add(pid, rec.label, "label_grid", f"label is not on the CT grid: {mismatch}", affects="label")
        values = np.unique(arr)
        bad = [v for v in values.tolist() if v not in (0, 1, 2)]
        if bad:
            shown = ", ".join(f"{v:g}" for v in bad[:8])
            sink.add(pid, rec.label, "label_values", f"label values outside {{0,1,2}}: {shown}", affects="label")


class _ImageProblem(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _read_checked(path: Path):
    """Header via SimpleITK (geometry) and voxels via nibabel.

    nibabel is used for the voxels because it raises on truncated gzip streams and keeps NaN,
    where ITK's NIfTI reader silently zero-fills both.
    """
    import nibabel as nib
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as exc:  # noqa: BLE001 - readers raise many types for corrupt files
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "rror" in ln), lines[0] if lines else type(exc).__name__)
        raise _ImageProblem("unreadable", f"cannot read NIfTI (corrupt or truncated?): {detail[:200]}") from None
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or data.ndim != 3:
        raise _ImageProblem("not_3d_scalar", f"expected a 3D scalar image, got shape {data.shape}")
    if np.issubdtype(data.dtype, np.floating):
        n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if n_bad:
            raise _ImageProblem("non_finite", f"{n_bad} NaN/inf voxels")
    return reader, data


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
