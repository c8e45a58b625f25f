"""Write a synthetic HECKTOR-layout patient as a DICOM FDG-PET/CT study (CT + PET series, one study).

The NIfTI patient of :mod:`hnc_core.synth` (CT in HU on ~1x1x3 mm, PET in SUV on 4 mm) becomes:

* a CT series (CT Image Storage), one file per slice, stored uint16 with ``RescaleIntercept = -1024``
  so the HU of the NIfTI twin come back exactly;
* an attenuation-corrected PET series (PET Image Storage) in activity concentration: ``Units = BQML``,
  ``DecayCorrection = START``, ``CorrectedImage`` holding ``ATTN`` and ``DECY``, stored uint16 with a
  per-slice ``RescaleSlope``. Activity (Bq/mL) = SUV x decayed dose (Bq) / weight (g), the dose decayed
  from ``RadiopharmaceuticalStartTime`` to the earliest ``AcquisitionTime`` of the series. Later bed
  positions get later ``AcquisitionTime``; ``SeriesTime`` is set to a reconstruction time after the
  scan (as anonymised and reconstructed studies often show), so a reader that decays to ``SeriesTime``
  gets the SUV wrong.

Age and sex go into the header (``PatientAge`` ``062Y``, ``PatientSex`` M/F, absent when unknown);
the other clinical variables go into a JSON sidecar ``clinical.json`` beside the series folders.
World coordinates: SimpleITK's physical space is LPS, as DICOM's, so ``ImagePositionPatient`` is the
NIfTI twin's physical point of each slice's first voxel.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hnc_core import schema
from hnc_core.io import atomic_path, write_json_atomic

F18_HALF_LIFE_S = 6586.2  # 18F, seconds
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
PET_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.128"
CLINICAL_SIDECAR = "clinical.json"
# Clinical columns the sidecar carries (age and sex travel in the DICOM header).
SIDECAR_COLUMNS = (schema.TOBACCO, schema.ALCOHOL, schema.PERFORMANCE, schema.TREATMENT, schema.M_STAGE,
                   schema.HPV)


@dataclass(frozen=True)
class PetAcquisition:
    """Dose, weight and timing of a synthetic FDG scan. Times are seconds after midnight."""

    weight_kg: float = 75.0
    injected_dose_bq: float = 3.5e8
    half_life_s: float = F18_HALF_LIFE_S
    injection_time_s: float = 9 * 3600.0
    uptake_s: float = 3600.0            # injection -> first bed position
    bed_duration_s: float = 150.0       # each bed position starts this much later
    slices_per_bed: int = 12
    reconstruction_delay_s: float = 1800.0  # SeriesTime = scan start + this

    @property
    def acquisition_start_s(self) -> float:
        return self.injection_time_s + self.uptake_s

    def decayed_dose_bq(self) -> float:
        """Injected dose decayed to the acquisition start (Bq)."""
        return self.injected_dose_bq * 2.0 ** (-self.uptake_s / self.half_life_s)

    def bq_per_ml_per_suv(self) -> float:
        """Activity concentration (Bq/mL) of SUVbw = 1: decayed dose / weight in g."""
        return self.decayed_dose_bq() / (self.weight_kg * 1000.0)


def _tm(seconds: float) -> str:
    """DICOM TM string HHMMSS.ffffff of seconds after midnight."""
    seconds = float(seconds) % 86400.0
    h, rem = divmod(seconds, 3600.0)
    m, s = divmod(rem, 60.0)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def _patient_module(ds, patient: dict) -> None:
    ds.PatientID = patient["PatientID"]
    ds.PatientName = patient["PatientID"].replace("-", "^")
    ds.PatientBirthDate = ""
    age = patient.get("Age")
    if age is not None and np.isfinite(float(age)):
        ds.PatientAge = f"{int(round(float(age))):03d}Y"
    sex = patient.get("Gender")
    ds.PatientSex = {1: "M", 0: "F"}.get(None if sex is None or (isinstance(sex, float) and math.isnan(sex))
                                         else int(float(sex)), "")


def _base_dataset(sop_class: str, study: dict, series_uid: str, patient: dict, modality: str):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid
    from pydicom import Dataset

    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.Modality = modality
    _patient_module(ds, patient)
    ds.StudyInstanceUID = study["StudyInstanceUID"]
    ds.StudyDate, ds.StudyTime = study["StudyDate"], study["StudyTime"]
    ds.StudyID, ds.AccessionNumber = "1", ""
    ds.StudyDescription = "FDG PET/CT head and neck (synthetic)"
    ds.ReferringPhysicianName = ""
    ds.FrameOfReferenceUID = study["FrameOfReferenceUID"]
    ds.PositionReferenceIndicator = ""
    ds.SeriesInstanceUID = series_uid
    ds.Manufacturer = "hnc-petct synthetic"
    ds.BodyPartExamined = "HEADNECK"
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def _slices(img):
    """(z, y, x) array and per-slice geometry of a SimpleITK image with identity direction."""
    import SimpleITK as sitk

    if not np.allclose(np.asarray(img.GetDirection()).reshape(3, 3), np.eye(3)):
        raise ValueError("only axial images with identity direction are written")
    arr = sitk.GetArrayFromImage(img)
    sx, sy, sz = img.GetSpacing()
    positions = [img.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(arr.shape[0])]
    return arr, (sx, sy, sz), positions


def _write(ds, path: Path) -> None:
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def write_ct_series(ct_img, out_dir: Path, study: dict, patient: dict, series_number: int = 2,
                    description: str = "CT head-neck") -> str:
    """Write a CT series, one file per slice; return its SeriesInstanceUID. ``ct_img`` in HU."""
    from pydicom.uid import generate_uid

    arr, (sx, sy, sz), positions = _slices(ct_img)
    hu = np.asarray(arr)
    if hu.min() < -1024 or hu.max() > 64511 or not np.array_equal(hu, np.round(hu)):
        raise ValueError("CT must hold integer HU >= -1024")
    series_uid = generate_uid()
    for k, pos in enumerate(positions):
        ds = _base_dataset(CT_SOP_CLASS, study, series_uid, patient, "CT")
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = series_number, k + 1, 1
        ds.SeriesDescription = description
        ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study["StudyDate"]
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study["StudyTime"]
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = 120
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.SliceLocation = f"{pos[2]:.6f}"
        ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{sz:.6f}"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = (hu[k].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        _write(ds, out_dir / f"CT_{k + 1:04d}.dcm")
    return series_uid


def write_pet_series(pet_img, out_dir: Path, study: dict, patient: dict, acq: PetAcquisition,
                     series_number: int = 3, description: str = "PET AC") -> str:
    """Write an attenuation-corrected PET series in Bq/mL; return its SeriesInstanceUID. ``pet_img`` in SUVbw."""
    from pydicom import Dataset
    from pydicom.uid import generate_uid

    arr, (sx, sy, sz), positions = _slices(pet_img)
    activity = np.clip(np.asarray(arr, np.float64), 0.0, None) * acq.bq_per_ml_per_suv()
    series_uid = generate_uid()
    n = len(positions)
    for k, pos in enumerate(positions):
        ds = _base_dataset(PET_SOP_CLASS, study, series_uid, patient, "PT")
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.SeriesDescription = description
        ds.ImageIndex = k + 1
        ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study["StudyDate"]
        ds.SeriesTime = _tm(acq.acquisition_start_s + acq.reconstruction_delay_s)
        bed = (n - 1 - k) // acq.slices_per_bed  # scan from the head (top slices) downwards
        ds.AcquisitionTime = _tm(acq.acquisition_start_s + bed * acq.bed_duration_s)
        ds.ContentTime = ds.SeriesTime
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.SeriesType = ["WHOLE BODY", "IMAGE"]
        ds.Units = "BQML"
        ds.CountsSource = "EMISSION"
        ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
        ds.DecayCorrection = "START"
        ds.NumberOfSlices = n
        ds.NumberOfTimeSlices = 1
        ds.PatientWeight = f"{acq.weight_kg:.1f}"
        ds.PatientSize = "1.75"
        rp = Dataset()
        rp.Radiopharmaceutical = "Fluorodeoxyglucose"
        rp.RadionuclideTotalDose = f"{acq.injected_dose_bq:.1f}"
        rp.RadionuclideHalfLife = f"{acq.half_life_s:.1f}"
        rp.RadionuclidePositronFraction = "0.9673"
        rp.RadiopharmaceuticalStartTime = _tm(acq.injection_time_s)
        ds.RadiopharmaceuticalInformationSequence = [rp]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.SliceLocation = f"{pos[2]:.6f}"
        ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]
        ds.SliceThickness = f"{sz:.6f}"
        ds.Rows, ds.Columns = activity.shape[1], activity.shape[2]
        peak = float(activity[k].max())
        slope = peak / 65535.0 if peak > 0 else 1.0
        ds.RescaleIntercept, ds.RescaleSlope = 0, f"{slope:.10g}"
        slope = float(ds.RescaleSlope)  # the value a reader will see
        ds.PixelData = np.round(activity[k] / slope).clip(0, 65535).astype(np.uint16).tobytes()
        _write(ds, out_dir / f"PT_{k + 1:04d}.dcm")
    return series_uid


def _study(pid: str, seed: int) -> dict:
    from pydicom.uid import generate_uid

    ent = f"hnc-petct-synth-{seed}-{pid}"
    return {
        "StudyInstanceUID": generate_uid(entropy_srcs=[ent, "study"]),
        "FrameOfReferenceUID": generate_uid(entropy_srcs=[ent, "for"]),
        "StudyDate": "20250101", "StudyTime": _tm(9 * 3600.0 + 3000.0),
    }


def _clean(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (np.integer, np.floating)):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _number(v):
    """CSV cell -> float, or the cell itself when not numeric (None for missing)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def write_patient_study(cohort_dir: str | Path, patient_id: str, out_dir: str | Path, seed: int = 0,
                        acquisition: PetAcquisition | None = None) -> dict:
    """Write one patient of a synthetic NIfTI cohort as a DICOM study under ``out_dir``.

    ``out_dir/CT/*.dcm``, ``out_dir/PT/*.dcm`` and ``out_dir/clinical.json`` (sidecar, HECKTOR column
    names). Returns ``{"CT": series_uid, "PT": series_uid, "StudyInstanceUID": ..., "acquisition": {...}}``.
    The PET weight is drawn per patient (55-95 kg, from ``seed``) unless ``acquisition`` is given.
    """
    import pandas as pd
    import SimpleITK as sitk

    cohort_dir, out_dir = Path(cohort_dir), Path(out_dir)
    clinical = pd.read_csv(cohort_dir / schema.CLINICAL_CSV_NAME, dtype=object).set_index(schema.PATIENT_ID)
    if patient_id not in clinical.index:
        raise KeyError(f"patient {patient_id} not in {cohort_dir / schema.CLINICAL_CSV_NAME}")
    row = {k: _clean(v if k == schema.M_STAGE else _number(v)) for k, v in clinical.loc[patient_id].items()}
    if acquisition is None:
        rng = np.random.default_rng([seed, sum(map(ord, patient_id))])
        acquisition = PetAcquisition(weight_kg=float(np.round(rng.uniform(55, 95), 1)),
                                     injected_dose_bq=float(np.round(rng.uniform(2.5e8, 4.0e8), -5)))
    ct = sitk.ReadImage(str(cohort_dir / patient_id / f"{patient_id}{schema.CT_SUFFIX}"))
    pet = sitk.ReadImage(str(cohort_dir / patient_id / f"{patient_id}{schema.PET_SUFFIX}"))
    study = _study(patient_id, seed)
    patient = {"PatientID": patient_id, "Age": row.get(schema.AGE), "Gender": row.get(schema.GENDER)}
    ct_uid = write_ct_series(ct, out_dir / "CT", study, patient)
    pt_uid = write_pet_series(pet, out_dir / "PT", study, patient, acquisition)
    write_json_atomic(out_dir / CLINICAL_SIDECAR, {"PatientID": patient_id,
                                                   **{c: row.get(c) for c in SIDECAR_COLUMNS}})
    return {"StudyInstanceUID": study["StudyInstanceUID"], "CT": ct_uid, "PT": pt_uid,
            "acquisition": {"weight_kg": acquisition.weight_kg, "injected_dose_bq": acquisition.injected_dose_bq,
                            "bq_per_ml_per_suv": acquisition.bq_per_ml_per_suv()}}


def write_cohort_studies(cohort_dir: str | Path, out_dir: str | Path, seed: int = 0) -> dict[str, dict]:
    """Write every patient of a synthetic cohort as ``out_dir/<PatientID>/`` DICOM studies."""
    import pandas as pd

    ids = [pid for pid in pd.read_csv(Path(cohort_dir) / schema.CLINICAL_CSV_NAME, dtype=object)[schema.PATIENT_ID]
           if (Path(cohort_dir) / pid).is_dir()]  # CSV rows without an image folder have nothing to write
    out = {pid: write_patient_study(cohort_dir, pid, Path(out_dir) / pid, seed=seed) for pid in ids}
    write_json_atomic(Path(out_dir) / "studies.json", out)
    return out


def _main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="write a synthetic NIfTI cohort as DICOM PET/CT studies")
    p.add_argument("cohort_dir")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    studies = write_cohort_studies(a.cohort_dir, a.out_dir, seed=a.seed)
    print(json.dumps({k: {"CT": v["CT"], "PT": v["PT"]} for k, v in studies.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
