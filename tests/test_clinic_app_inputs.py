"""Clinic app front end: synthetic DICOM -> SUVbw / HU on the NIfTI twin's grids; bad studies refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monai.deploy")
pydicom = pytest.importorskip("pydicom")
sitk = pytest.importorskip("SimpleITK")

ROOT = Path(__file__).resolve().parents[1]
PID = "CHUP-001"  # first patient of `hnc-petct synth --n 2 --seed 0`


def run_app(module: str, study: Path, out: Path, timeout: int = 300, env_extra: dict | None = None):
    """Run a clinic-app module in a subprocess under a 32 MB stack, as the docs do."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    cmd = f'ulimit -s 32768 && exec "{sys.executable}" -m {module} -i "{study}" -o "{out}" -l WARN'
    return subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> dict:
    """NIfTI cohort (`synth --n 2 --seed 0`) and its first patient written as a DICOM study."""
    from hnc_core.dicom_synth import write_patient_study
    from hnc_core.synth import generate_cohort

    root = tmp_path_factory.mktemp("clinic_twin")
    generate_cohort(root / "nifti", n=2, seed=0, progress=False)
    info = write_patient_study(root / "nifti", PID, root / "study", seed=0)
    return {"nifti": root / "nifti", "study": root / "study", "info": info, "root": root}


def _nifti(twin, suffix):
    return sitk.ReadImage(str(twin["nifti"] / PID / f"{PID}{suffix}"))


# ------------------------------------------------------------------------------------ unit level


def test_synthetic_pet_is_bqml_with_per_slice_slopes_and_decay_tags(twin):
    files = sorted((twin["study"] / "PT").glob("*.dcm"))
    dss = [pydicom.dcmread(f) for f in files]
    assert {ds.Units for ds in dss} == {"BQML"}
    assert len({float(ds.RescaleSlope) for ds in dss}) > len(dss) // 2  # slopes differ slice to slice
    assert len({ds.AcquisitionTime for ds in dss}) > 1                   # several bed positions
    rp = dss[0].RadiopharmaceuticalInformationSequence[0]
    assert float(rp.RadionuclideHalfLife) == pytest.approx(6586.2)
    assert float(dss[0].PatientWeight) > 0 and float(rp.RadionuclideTotalDose) > 0


def test_suv_factor_decays_to_earliest_acquisition_not_series_time(twin):
    from hnc_petct.clinic_app.suv import suv_factors

    dss = [pydicom.dcmread(f) for f in sorted((twin["study"] / "PT").glob("*.dcm"))]
    f = suv_factors(dss)
    assert np.ptp(f) == 0  # DecayCorrection START: one factor for the series
    assert f[0] == pytest.approx(1.0 / twin["info"]["acquisition"]["bq_per_ml_per_suv"], rel=1e-6)
    for ds in dss:  # decaying to each slice's own time would change the factor per bed position
        ds.DecayCorrection = "NONE"
    g = suv_factors(dss)
    assert np.ptp(g) > 0 and g.min() == pytest.approx(f[0], rel=1e-9)


def test_suv_refuses_counts_and_missing_decay_data(twin):
    from hnc_petct.clinic_app.errors import StudyInputError
    from hnc_petct.clinic_app.suv import suv_factors

    first = sorted((twin["study"] / "PT").glob("*.dcm"))[0]
    cnts = pydicom.dcmread(first)
    cnts.Units = "CNTS"
    with pytest.raises(StudyInputError, match="CNTS, not BQML"):
        suv_factors([cnts])
    no_hl = pydicom.dcmread(first)
    del no_hl.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife
    with pytest.raises(StudyInputError, match="RadionuclideHalfLife"):
        suv_factors([no_hl])
    no_w = pydicom.dcmread(first)
    del no_w.PatientWeight
    with pytest.raises(StudyInputError, match="PatientWeight"):
        suv_factors([no_w])


def test_pet_read_as_float_per_slice_even_when_the_first_slice_is_integral(twin):
    """The stock volume operator types the volume after slice 0; our reader must not truncate slice 1."""
    from hnc_petct.clinic_app.suv import read_float_slices

    files = sorted((twin["study"] / "PT").glob("*.dcm"))[:2]
    a, b = pydicom.dcmread(files[0]), pydicom.dcmread(files[1])
    a.RescaleSlope, b.RescaleSlope = 1, 0.37
    vals = read_float_slices([a, b])
    assert vals.dtype == np.float32
    assert np.allclose(vals[1], b.pixel_array * 0.37, rtol=1e-6)
    assert not np.allclose(vals[1], np.trunc(vals[1]))


def test_clinical_record_from_header_and_sidecar(tmp_path):
    from hnc_core import schema
    from hnc_petct.clinic_app.clinical import age_years, clinical_record, sex_code

    assert age_years("062Y") == 62 and age_years("018M") == 1.5 and age_years("") is None
    assert sex_code("M") == 1 and sex_code("F") == 0 and sex_code("O") is None
    side = tmp_path / "clinical.json"
    side.write_text(json.dumps({"PatientID": "X-001", schema.TOBACCO: 1, schema.HPV: None}))
    rec, warn = clinical_record("062Y", "", side, "X-001")
    assert rec[schema.AGE] == 62 and rec[schema.GENDER] is None and rec[schema.TOBACCO] == 1
    assert rec[schema.HPV] is None and any("Gender" in w for w in warn)
    rec, warn = clinical_record("062Y", "M", None, "X-001")
    assert all(rec[c] is None for c in (schema.TOBACCO, schema.M_STAGE)) and "no clinical sidecar" in warn[0]


# ------------------------------------------------------------------------------- app in a subprocess


@pytest.mark.slow
def test_inspect_app_reproduces_nifti_twin(twin, tmp_path):
    out = tmp_path / "out"
    r = run_app("hnc_petct.clinic_app.inspect", twin["study"], out)
    assert r.returncode == 0, r.stderr[-3000:]
    ct0, pet0 = _nifti(twin, "__CT.nii.gz"), _nifti(twin, "__PT.nii.gz")
    ct1 = sitk.ReadImage(str(out / "inputs" / "ct_hu.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(ct1), sitk.GetArrayFromImage(ct0))  # HU exact
    assert np.allclose(ct1.GetOrigin(), ct0.GetOrigin(), atol=1e-4)
    assert np.allclose(ct1.GetSpacing(), ct0.GetSpacing(), atol=1e-6)
    pet1 = sitk.ReadImage(str(out / "inputs" / "pet_suv.nii.gz"))
    a0, a1 = sitk.GetArrayFromImage(pet0), sitk.GetArrayFromImage(pet1)
    assert a1.shape == a0.shape and np.allclose(pet1.GetOrigin(), pet0.GetOrigin(), atol=1e-4)
    assert np.all(np.abs(a1 - a0) <= 0.01 * np.abs(a0) + 1e-3)  # SUV within 1 %
    # PET on the CT grid equals SimpleITK's linear resampling of the NIfTI twin
    ref = sitk.GetArrayFromImage(sitk.Resample(pet0, ct0, sitk.Transform(), sitk.sitkLinear, 0.0,
                                               sitk.sitkFloat32))
    on_ct = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "inputs" / "pet_suv_on_ct.nii.gz")))
    assert on_ct.shape == ref.shape and np.all(np.abs(on_ct - ref) <= 0.01 * np.abs(ref) + 1e-3)
    info = json.loads((out / "inputs" / "inputs.json").read_text())
    assert info["series"]["CT"]["SeriesInstanceUID"] == twin["info"]["CT"]
    assert info["clinical"]["record"]["Age"] is not None
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def _copy_study(twin, tmp_path) -> Path:
    dst = tmp_path / "study"
    shutil.copytree(twin["study"], dst)
    return dst


def _edit_pet(study: Path, fn) -> None:
    for f in sorted((study / "PT").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        fn(ds)
        ds.save_as(f)


def _no_pet(study, twin):
    shutil.rmtree(study / "PT")


def _no_overlap(study, twin):
    def shift(ds):
        p = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [p[0], p[1], p[2] + 900.0]
    _edit_pet(study, shift)


def _counts_no_decay(study, twin):
    def counts(ds):
        ds.Units = "CNTS"
        del ds.RadiopharmaceuticalInformationSequence
    _edit_pet(study, counts)


def _truncated(study, twin):
    f = sorted((study / "PT").glob("*.dcm"))[10]
    f.write_bytes(f.read_bytes()[:700])


def _two_ct(study, twin):
    from pydicom.uid import generate_uid

    uid = generate_uid()
    (study / "CT2").mkdir()
    for f in sorted((study / "CT").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = "CT head-neck soft tissue"
        ds.save_as(study / "CT2" / f.name)


BAD = {
    "no PET": (_no_pet, ["no attenuation-corrected PET series", "series found"]),
    "no overlap": (_no_overlap, ["does not overlap the CT series", "PET z"]),
    "counts without decay data": (_counts_no_decay, ["CNTS, not BQML"]),
    "truncated file": (_truncated, ["not evenly spaced", "PT/PT_0011.dcm"]),
    "two CT series": (_two_ct, ["2 candidate CT series", "CT head-neck soft tissue"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD))
def test_bad_study_one_clear_message_and_nothing_in_out(twin, tmp_path, case):
    make_bad, expected = BAD[case]
    study = _copy_study(twin, tmp_path)
    make_bad(study, twin)
    out = tmp_path / "out"
    r = run_app("hnc_petct.clinic_app.inspect", study, out)
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, r.stderr[-3000:]
    for text in expected:
        assert text in errors[0]
    if case not in ("no PET", "two CT series"):  # those name the study and every candidate instead
        pet_uid = twin["info"]["PT"]
        assert f"series {pet_uid} (PT" in errors[0]
    assert list(out.iterdir()) == []  # nothing half-written, no staging left behind


@pytest.mark.slow
def test_earlier_result_in_out_is_never_overwritten(twin, tmp_path):
    out = tmp_path / "out"
    (out / "report.json").parent.mkdir(parents=True)
    (out / "report.json").write_text('{"earlier": true}')
    r = run_app("hnc_petct.clinic_app.inspect", twin["study"], out)
    assert r.returncode == 2 and "already holds report.json" in r.stderr
    assert json.loads((out / "report.json").read_text()) == {"earlier": True}
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
