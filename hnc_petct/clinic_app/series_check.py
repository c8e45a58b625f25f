"""Checks of the selected CT and PET series before any pixel is converted.

The stock ``DICOMSeriesSelectorOperator`` runs with ``all_matched=True`` so that ambiguity is visible;
:class:`SeriesCheckOperator` then insists on exactly one study, one CT and one attenuation-corrected PET,
and on complete, regular series (a truncated or unreadable file shows up as a missing slice). It
passes each series on as its own ``StudySelectedSeries`` list, the input the stock
``DICOMSeriesToVolumeOperator`` converts (it converts only the first selected series).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .errors import StudyInputError, describe_series
from .geometry import slice_normal

log = logging.getLogger(__name__)

CT, PET = "CT", "PET"

# Selection rules for the stock DICOMSeriesSelectorOperator: CT images, and PET images whose
# CorrectedImage (0028,0051) holds ATTN (attenuation-corrected; NAC reconstructions are left out).
SELECTION_RULES = {
    "selections": [
        {"name": CT, "conditions": {"Modality": "(?i)^CT$", "ImageType": ["ORIGINAL", "!LOCALIZER"]}},
        {"name": PET, "conditions": {"Modality": "(?i)^PT$", "CorrectedImage": ["ATTN"]}},
    ]
}


def selection_rules_json() -> str:
    """The rules as the JSON string the selector takes; ``HNC_SELECTION_RULES`` (a JSON file) overrides."""
    path = os.environ.get("HNC_SELECTION_RULES")
    return Path(path).read_text() if path else json.dumps(SELECTION_RULES)


def _datasets(series) -> list:
    return [s.get_native_sop_instance() for s in series.get_sop_instances()]


def _series_summary(series) -> str:
    return f"{describe_series(series)}, {len(series.get_sop_instances())} instances"


def expected_pixel_bytes(ds) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8 * frames


def check_series(series, unread_files: list[str]) -> None:
    """Raise :class:`StudyInputError` unless ``series`` is a complete axial stack of readable slices."""
    dss = _datasets(series)
    if len(dss) < 2:
        raise StudyInputError(f"holds {len(dss)} readable slice(s); a volume needs at least 2", series)
    for ds in dss:
        name = Path(getattr(ds, "filename", "") or "?").name
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
            if tag not in ds:
                raise StudyInputError(f"instance {name} has no {tag}", series)
        got = len(ds.PixelData) if "PixelData" in ds else 0
        if got < expected_pixel_bytes(ds):
            raise StudyInputError(
                f"instance {name} is truncated: pixel data {got} of {expected_pixel_bytes(ds)} bytes", series)
    iop0 = np.asarray([float(v) for v in dss[0].ImageOrientationPatient])
    for ds in dss[1:]:
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], iop0, atol=1e-4):
            raise StudyInputError("slices have different ImageOrientationPatient", series)
        if (ds.Rows, ds.Columns) != (dss[0].Rows, dss[0].Columns):
            raise StudyInputError("slices have different Rows/Columns", series)
    normal = slice_normal(dss[0])
    pos = np.sort([float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds in dss])
    steps = np.diff(pos)
    step = float(np.median(steps))
    if step <= 0 or np.abs(steps - step).max() > 0.01 * step + 0.01:
        k = int(np.argmax(np.abs(steps - step)))
        hint = f"; files the loader could not read: {', '.join(unread_files)}" if unread_files else ""
        raise StudyInputError(
            f"slice positions are not evenly spaced: {steps[k]:.2f} mm between slices at {pos[k]:.2f} and "
            f"{pos[k + 1]:.2f} mm (step {step:.2f} mm): a slice is missing or unreadable{hint}", series)


def unread_files(input_dir: str | os.PathLike | None, studies) -> list[str]:
    """Files under ``input_dir`` that are in no loaded series (unreadable or not DICOM), relative paths."""
    if not input_dir or not Path(input_dir).is_dir():
        return []
    loaded = {os.path.abspath(getattr(s.get_native_sop_instance(), "filename", "") or "")
              for st in studies for se in st.get_all_series() for s in se.get_sop_instances()}
    root = Path(input_dir)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and os.path.abspath(p) not in loaded and p.suffix.lower() != ".json")


def pick(studies, selected, input_dir=None) -> tuple[object, object, object, list[str]]:
    """(study, CT series, PET series, warnings) from the loader's studies and the selector's output."""
    if not studies:
        raise StudyInputError(f"no DICOM study found in {input_dir}")
    if len(studies) > 1:
        raise StudyInputError(f"the input holds {len(studies)} studies "
                              f"({', '.join(s.StudyInstanceUID for s in studies)}); give one study per run")
    study = studies[0]
    unread = unread_files(input_dir, studies)
    found = {CT: [], PET: []}
    for sss in selected or []:
        for sel in sss.selected_series:
            if sel.selection_name in found and sel.series not in found[sel.selection_name]:
                found[sel.selection_name].append(sel.series)
    others = "; ".join(_series_summary(s) for s in study.get_all_series()) or "none"
    what = {CT: "CT series", PET: "attenuation-corrected PET series (Modality PT, CorrectedImage with ATTN)"}
    for name in (CT, PET):
        if not found[name]:
            raise StudyInputError(f"study {study.StudyInstanceUID}: no {what[name]}; series found: {others}")
        if len(found[name]) > 1:
            cands = "; ".join(_series_summary(s) for s in found[name])
            raise StudyInputError(f"study {study.StudyInstanceUID}: {len(found[name])} candidate {what[name]}: "
                                  f"{cands}. Keep one in the input folder or narrow the selection rules "
                                  "(HNC_SELECTION_RULES=rules.json)")
    ct, pet = found[CT][0], found[PET][0]
    for s in (ct, pet):
        check_series(s, unread)
    ct_ds, pet_ds = _datasets(ct)[0], _datasets(pet)[0]
    if str(ct_ds.get("PatientID", "")) != str(pet_ds.get("PatientID", "")):
        raise StudyInputError(f"PatientID {pet_ds.get('PatientID')!r} differs from the CT's "
                              f"{ct_ds.get('PatientID')!r}", pet)
    warnings = []
    if unread:
        warnings.append(f"ignored {len(unread)} file(s) that are not readable DICOM: {', '.join(unread[:10])}")
    if ct_ds.get("FrameOfReferenceUID") != pet_ds.get("FrameOfReferenceUID"):
        warnings.append("CT and PET have different FrameOfReferenceUID; they are assumed to be registered")
    return study, ct, pet, warnings


def as_selection(study, series, name: str):
    """One-series ``List[StudySelectedSeries]`` (the form the stock volume and SEG writer operators take)."""
    from monai.deploy.core.domain.dicom_series_selection import SelectedSeries, StudySelectedSeries

    sss = StudySelectedSeries(study)
    sss.add_selected_series(SelectedSeries(name, series, None))
    return [sss]
