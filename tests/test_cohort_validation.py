"""Every validation error the data layer promises, each built from a real bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hnc_core import schema
from hnc_core.cohort import CohortError, load_cohort


def _ids(cohort_dir):
    return sorted(p.name for p in cohort_dir.iterdir() if p.is_dir())


def _csv(cohort_dir):
    return pd.read_csv(cohort_dir / schema.CLINICAL_CSV_NAME, dtype={schema.M_STAGE: str})


def _write_csv(cohort_dir, df):
    df.to_csv(cohort_dir / schema.CLINICAL_CSV_NAME, index=False)


def _problems(cohort, code):
    return [p for p in cohort.problems if p.code == code]


def _only_problem(cohort_dir, code, pid, file_name=None):
    cohort = load_cohort(cohort_dir)
    found = _problems(cohort, code)
    assert len(found) == 1, [str(p) for p in cohort.problems]
    assert found[0].patient_id == pid
    if file_name:
        assert found[0].file.endswith(file_name)
    assert pid in str(found[0])
    others = [p for p in _ids(cohort_dir) if p != pid]
    assert set(others) <= set(cohort.usable_ids("images")), "the rest of the batch must stay usable"
    return cohort, found[0]


def test_truncated_nifti_is_reported(cohort_copy):
    pid = _ids(cohort_copy)[0]
    ct = cohort_copy / pid / f"{pid}__CT.nii.gz"
    data = ct.read_bytes()
    ct.write_bytes(data[: len(data) // 2])
    cohort, p = _only_problem(cohort_copy, "unreadable", pid, ct.name)
    assert pid not in cohort.usable_ids("images")


def test_garbage_file_is_reported(cohort_copy):
    pid = _ids(cohort_copy)[1]
    pet = cohort_copy / pid / f"{pid}__PT.nii.gz"
    pet.write_bytes(b"not a nifti at all")
    _only_problem(cohort_copy, "unreadable", pid, pet.name)


@pytest.mark.parametrize("suffix,code", [("__CT.nii.gz", "missing_ct"), ("__PT.nii.gz", "missing_pet")])
def test_missing_modality(cohort_copy, suffix, code):
    pid = _ids(cohort_copy)[0]
    (cohort_copy / pid / f"{pid}{suffix}").unlink()
    cohort, p = _only_problem(cohort_copy, code, pid, f"{pid}{suffix}")
    assert pid not in cohort.usable_ids("images")


def test_pet_and_ct_without_overlap(cohort_copy):
    pid = _ids(cohort_copy)[0]
    path = cohort_copy / pid / f"{pid}__PT.nii.gz"
    pet = sitk.ReadImage(str(path))
    pet.SetOrigin(tuple(np.array(pet.GetOrigin()) + np.array([0.0, 0.0, 2000.0])))
    sitk.WriteImage(pet, str(path))
    cohort, p = _only_problem(cohort_copy, "no_overlap", pid, path.name)
    assert "do not overlap" in p.message
    assert pid not in cohort.usable_ids("images")


def test_label_on_other_grid(cohort_copy):
    pid = _ids(cohort_copy)[0]
    path = cohort_copy / pid / f"{pid}.nii.gz"
    lab = sitk.ReadImage(str(path))
    sitk.WriteImage(lab[::2, ::2, :], str(path))
    cohort, p = _only_problem(cohort_copy, "label_grid", pid, path.name)
    assert "size" in p.message and "spacing" in p.message
    assert pid in cohort.usable_ids("images") and pid not in cohort.usable_ids("segmentation")


def test_label_values_outside_range(cohort_copy):
    pid = _ids(cohort_copy)[0]
    path = cohort_copy / pid / f"{pid}.nii.gz"
    lab = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(lab)
    arr[0, 0, 0] = 3
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(lab)
    sitk.WriteImage(bad, str(path))
    cohort, p = _only_problem(cohort_copy, "label_values", pid, path.name)
    assert "3" in p.message
    assert pid not in cohort.usable_ids("segmentation")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_voxels(cohort_copy, value):
    pid = _ids(cohort_copy)[0]
    path = cohort_copy / pid / f"{pid}__PT.nii.gz"
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    arr[1, 2, 3] = value
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    sitk.WriteImage(bad, str(path))
    _only_problem(cohort_copy, "non_finite", pid, path.name)


def test_duplicate_ids_in_csv(cohort_copy):
    df = _csv(cohort_copy)
    df = pd.concat([df, df.iloc[[0]]])
    _write_csv(cohort_copy, df)
    pid = df.iloc[0][schema.PATIENT_ID]
    cohort = load_cohort(cohort_copy)
    dup = _problems(cohort, "duplicate_id")
    assert [p.patient_id for p in dup] == [pid]
    assert "lines [2, 6]" in dup[0].message
    assert pid not in cohort.usable_ids("rfs") and pid in cohort.usable_ids("images")


def test_duplicate_patient_folders(cohort_copy):
    import shutil

    pid = _ids(cohort_copy)[0]
    alt = pid.replace("-", "_")
    shutil.copytree(cohort_copy / pid, cohort_copy / alt)
    cohort = load_cohort(cohort_copy)
    dup = _problems(cohort, "duplicate_id")
    assert len(dup) == 1 and dup[0].patient_id == pid and alt in dup[0].message


def test_csv_patient_without_images_and_images_without_csv(cohort_copy):
    df = _csv(cohort_copy)
    ghost = df.iloc[[0]].copy()
    ghost[schema.PATIENT_ID] = "CHUM-999"
    orphan = df.iloc[1][schema.PATIENT_ID]
    df = pd.concat([df.drop(index=1), ghost])
    _write_csv(cohort_copy, df)
    cohort = load_cohort(cohort_copy)
    assert [p.patient_id for p in _problems(cohort, "no_images")] == ["CHUM-999"]
    assert [p.patient_id for p in _problems(cohort, "not_in_csv")] == [orphan]
    assert orphan in cohort.usable_ids("segmentation") and orphan not in cohort.usable_ids("rfs")
    assert "CHUM-999" not in cohort.usable_ids("rfs")


@pytest.mark.parametrize("rfs,relapse,code", [(-5, 1, "negative_rfs"), (None, 1, "missing_rfs")])
def test_bad_rfs(cohort_copy, rfs, relapse, code):
    df = _csv(cohort_copy)
    df[schema.RFS] = df[schema.RFS].astype(object)
    df.loc[0, schema.RFS] = rfs
    df.loc[0, schema.RELAPSE] = relapse
    _write_csv(cohort_copy, df)
    pid = df.loc[0, schema.PATIENT_ID]
    cohort, p = _only_problem(cohort_copy, code, pid, schema.CLINICAL_CSV_NAME)
    assert pid not in cohort.usable_ids("rfs") and pid in cohort.usable_ids("segmentation")


def test_unknown_categorical_codes_are_warnings(cohort_copy):
    df = _csv(cohort_copy)
    df[schema.M_STAGE] = df[schema.M_STAGE].astype(object)
    df.loc[0, schema.M_STAGE] = "M9"
    df[schema.GENDER] = df[schema.GENDER].astype(object)
    df.loc[1, schema.GENDER] = 7
    _write_csv(cohort_copy, df)
    cohort = load_cohort(cohort_copy)
    unk = _problems(cohort, "unknown_code")
    assert {(p.patient_id, p.severity) for p in unk} == {
        (df.loc[0, schema.PATIENT_ID], "warning"), (df.loc[1, schema.PATIENT_ID], "warning")}
    assert any("M9" in p.message for p in unk)
    assert len(cohort.usable_ids("rfs")) == 4  # warnings do not exclude patients


def test_collects_all_problems_or_stops_at_first(cohort_copy):
    a, b = _ids(cohort_copy)[:2]
    (cohort_copy / a / f"{a}__CT.nii.gz").unlink()
    (cohort_copy / b / f"{b}__PT.nii.gz").write_bytes(b"junk")
    cohort = load_cohort(cohort_copy, collect=True)
    assert {p.patient_id for p in cohort.problems if p.severity == "error"} == {a, b}
    assert len(cohort.usable_ids("images")) == 2
    with pytest.raises(CohortError, match=a):
        load_cohort(cohort_copy, collect=False)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hnc_petct.cli", *args], capture_output=True, text=True)


def test_validate_cli_table_json_and_exit_codes(cohort_copy, tmp_path):
    a = _ids(cohort_copy)[0]
    (cohort_copy / a / f"{a}__PT.nii.gz").unlink()
    out = tmp_path / "report.json"
    r = _cli("validate", str(cohort_copy), "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert a in r.stdout and "missing_pet" in r.stdout and "usable: images 3" in r.stdout
    report = json.loads(out.read_text())
    assert report["summary"]["usable"]["images"] == 3
    pat = {p["PatientID"]: p for p in report["patients"]}
    assert pat[a]["problems"][0]["code"] == "missing_pet" and pat[a]["usable_for"] == []
    for pid in _ids(cohort_copy):
        (cohort_copy / pid / f"{pid}__CT.nii.gz").unlink()
    r = _cli("validate", str(cohort_copy))
    assert r.returncode != 0 and "usable: images 0" in r.stdout
