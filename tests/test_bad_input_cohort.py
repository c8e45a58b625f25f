"""Issue 13 in the shared reader (``hnc_core.cohort``): what used to be silently accepted or misreported.

Each test breaks one thing in a copy of the tiny synthetic cohort and checks the one problem that names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hnc_core import schema
from hnc_core.cohort import load_cohort


def _pids(c):
    return sorted(p.name for p in c.iterdir() if p.is_dir())


def _found(cohort, code, pid=None):
    got = [p for p in cohort.problems if p.code == code and (pid is None or p.patient_id == pid)]
    assert got, [str(p) for p in cohort.problems]
    return got[0]


def _rewrite(path, fn, dtype=None):
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    out = fn(img, arr)
    if isinstance(out, np.ndarray):
        new = sitk.GetImageFromArray(out.astype(dtype) if dtype else out)
        new.CopyInformation(img)
        out = new
    sitk.WriteImage(out, str(path))


def _ct(c, pid):
    return c / pid / f"{pid}__CT.nii.gz"


def _pet(c, pid):
    return c / pid / f"{pid}__PT.nii.gz"


def _lab(c, pid):
    return c / pid / f"{pid}.nii.gz"


# ------------------------------------------------------------------------------------------ geometry


def test_sliver_overlap_is_warned(cohort_copy):
    pid = _pids(cohort_copy)[0]
    ct = sitk.ReadImage(str(_ct(cohort_copy, pid)))
    lo_z = ct.TransformIndexToPhysicalPoint((0, 0, ct.GetSize()[2] - 1))[2]

    def slab(img, arr):  # move the PET so that only ~1 mm overlaps the CT's top slice
        o = list(img.GetOrigin())
        o[2] = lo_z + 1.5 - 0.5 * img.GetSpacing()[2] + 1.0
        img.SetOrigin(o)
        return img
    _rewrite(_pet(cohort_copy, pid), slab)
    p = _found(load_cohort(cohort_copy), "small_overlap", pid)
    assert p.severity == "warning" and "% of the CT" in p.message and p.file.endswith("__PT.nii.gz")


@pytest.mark.parametrize("value", [0.0, -4.0, 1e6])
def test_non_positive_or_absurd_spacing_refused(cohort_copy, value):
    pid = _pids(cohort_copy)[0]
    path = _pet(cohort_copy, pid)
    img = nib.load(str(path))
    hdr = img.header.copy()
    out = nib.Nifti1Image(np.asarray(img.dataobj), None, hdr)
    out.header["pixdim"][3] = value
    out.header["sform_code"] = 0
    out.header["qform_code"] = 1
    out.to_filename(str(path))
    cohort = load_cohort(cohort_copy)
    p = _found(cohort, "bad_spacing", pid)
    assert "spacing" in p.message and pid not in cohort.usable_ids("images")


def test_sheared_affine_keeps_itks_reason(cohort_copy):
    pid = _pids(cohort_copy)[0]
    img = nib.load(str(_ct(cohort_copy, pid)))
    a = img.affine.copy()
    a[0, 1] = 0.5
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), a), str(_ct(cohort_copy, pid)))
    p = _found(load_cohort(cohort_copy), "sheared_affine", pid)
    assert "orthonormal" in p.message and "corrupt" not in p.message


def test_4d_pet_is_blamed_on_the_pet(cohort_copy):
    pid = _pids(cohort_copy)[0]
    img = nib.load(str(_pet(cohort_copy, pid)))
    arr = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.stack([arr, arr], -1), img.affine), str(_pet(cohort_copy, pid)))
    p = _found(load_cohort(cohort_copy), "not_3d_scalar", pid)
    assert p.file.endswith("__PT.nii.gz") and "4D" in p.message


# --------------------------------------------------------------------------------------- intensities


def test_ct_without_rescale_is_warned(cohort_copy):
    pid = _pids(cohort_copy)[0]
    _rewrite(_ct(cohort_copy, pid), lambda img, arr: arr.astype(np.int32) + 1024, np.uint16)
    p = _found(load_cohort(cohort_copy), "ct_not_hu", pid)
    assert "no air" in p.message and "values 0" in p.message


@pytest.mark.parametrize("value,dtype", [(2**31 - 1, np.int32), (-(2**31), np.int32), (1e300, np.float64)])
def test_ct_outside_any_hu_range_refused(cohort_copy, value, dtype):
    pid = _pids(cohort_copy)[0]

    def put(img, arr):
        arr = arr.astype(dtype)
        arr[0, 0, 0] = value
        return arr
    _rewrite(_ct(cohort_copy, pid), put)
    cohort = load_cohort(cohort_copy)
    p = _found(cohort, "implausible_ct", pid)
    assert "HU" in p.message and pid not in cohort.usable_ids("images")


def test_pet_all_zero_refused_and_bqml_warned(cohort_copy):
    a, b = _pids(cohort_copy)[:2]
    _rewrite(_pet(cohort_copy, a), lambda img, arr: np.zeros_like(arr))
    _rewrite(_pet(cohort_copy, b), lambda img, arr: arr * 5000.0)
    cohort = load_cohort(cohort_copy)
    assert _found(cohort, "empty_pet", a).severity == "error" and a not in cohort.usable_ids("images")
    p = _found(cohort, "pet_not_suv", b)
    assert "Bq/mL" in p.message and p.file.endswith(f"{b}__PT.nii.gz")


def test_ct_and_pet_swapped(cohort_copy):
    pid = _pids(cohort_copy)[0]
    ct, pet = _ct(cohort_copy, pid), _pet(cohort_copy, pid)
    tmp = ct.with_name("x.nii.gz")
    ct.rename(tmp)
    pet.rename(ct)
    tmp.rename(pet)
    p = _found(load_cohort(cohort_copy), "swapped_ct_pet", pid)
    assert "swapped" in p.message


# --------------------------------------------------------------------------------------------- labels


def test_empty_label_is_warned(cohort_copy):
    pid = _pids(cohort_copy)[0]
    _rewrite(_lab(cohort_copy, pid), lambda img, arr: np.zeros_like(arr))
    p = _found(load_cohort(cohort_copy), "empty_label", pid)
    assert p.severity == "warning"


@pytest.mark.parametrize("suffix", ["__seg", "_gtv", "__GTV"])
def test_near_miss_label_names_are_reported(cohort_copy, suffix):
    pid = _pids(cohort_copy)[0]
    _lab(cohort_copy, pid).rename(cohort_copy / pid / f"{pid}{suffix}.nii.gz")
    p = _found(load_cohort(cohort_copy), "unrecognised_file", pid)
    assert f"{pid}{suffix}.nii.gz" in p.message and f"{pid}.nii.gz" in p.message and "label" in p.message


# ----------------------------------------------------------------------------------------- file layout


def test_wrong_case_ct_is_named(cohort_copy):
    pid = _pids(cohort_copy)[0]
    _ct(cohort_copy, pid).rename(cohort_copy / pid / f"{pid}__ct.nii.gz")
    p = _found(load_cohort(cohort_copy), "missing_ct", pid)
    assert f"{pid}__ct.nii.gz" in p.message and "case" in p.message


def test_folder_with_another_patients_files(cohort_copy):
    a, b = _pids(cohort_copy)[:2]
    for f in (cohort_copy / a).iterdir():
        f.unlink()
    for f in (cohort_copy / b).iterdir():
        shutil.copy(f, cohort_copy / a / f.name)
    p = _found(load_cohort(cohort_copy), "missing_ct", a)
    assert "another patient" in p.message and b in p.message


def test_files_one_level_too_deep(cohort_copy):
    pid = _pids(cohort_copy)[0]
    (cohort_copy / pid / "nested").mkdir()
    for f in list((cohort_copy / pid).glob("*.nii.gz")):
        f.rename(cohort_copy / pid / "nested" / f.name)
    cohort = load_cohort(cohort_copy)
    p = _found(cohort, "too_deep", pid)
    assert "one level deeper" in p.message and "nested" in p.message and pid not in cohort.usable_ids("images")


def test_dangling_symlinks(cohort_copy, tmp_path):
    a, b = _pids(cohort_copy)[:2]
    _pet(cohort_copy, a).unlink()
    _pet(cohort_copy, a).symlink_to(tmp_path / "gone.nii.gz")
    shutil.rmtree(cohort_copy / b)
    (cohort_copy / b).symlink_to(tmp_path / "gone_folder")
    cohort = load_cohort(cohort_copy)
    assert "broken symbolic link" in _found(cohort, "broken_symlink", a).message
    assert "broken symbolic link" in _found(cohort, "broken_symlink", b).message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_problems_are_called_so(cohort_copy):
    a, b = _pids(cohort_copy)[:2]
    _ct(cohort_copy, a).chmod(0)
    (cohort_copy / b).chmod(0)
    try:
        cohort = load_cohort(cohort_copy)
        assert "permission denied" in _found(cohort, "permission_denied", a).message
        assert "permission denied" in _found(cohort, "permission_denied", b).message
    finally:
        (cohort_copy / b).chmod(0o755)


# ----------------------------------------------------------------------------------------- clinical CSV


def _csv(c):
    return c / schema.CLINICAL_CSV_NAME


def test_semicolon_csv_is_read_and_named(cohort_copy):
    df = pd.read_csv(_csv(cohort_copy), dtype=str)
    df.to_csv(_csv(cohort_copy), sep=";", index=False)
    cohort = load_cohort(cohort_copy)
    assert len(cohort.usable_ids("rfs")) == 4
    p = _found(cohort, "csv_format")
    assert "';'" in p.message and schema.CLINICAL_CSV_NAME in p.message


def test_latin1_csv_is_decoded_not_dropped(cohort_copy):
    text = _csv(cohort_copy).read_text().replace(",1,", ",1,", 1)
    lines = text.splitlines()
    lines[0] = lines[0] + ",Comment"
    lines[1:] = [ln + ",Genève" for ln in lines[1:]]
    _csv(cohort_copy).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    cohort = load_cohort(cohort_copy)
    assert len(cohort.usable_ids("rfs")) == 4
    assert "latin-1" in _found(cohort, "csv_format").message
    assert cohort.clinical["Comment"].iloc[0] == "Genève"


def test_xlsx_renamed_to_csv_says_so_per_patient(cohort_copy, tmp_path):
    shutil.make_archive(str(tmp_path / "book"), "zip", cohort_copy / _pids(cohort_copy)[0])
    shutil.copy(tmp_path / "book.zip", _csv(cohort_copy))
    cohort = load_cohort(cohort_copy)
    assert "Excel" in _found(cohort, "unreadable_csv").message
    per_patient = [p for p in cohort.problems if p.code == "no_clinical"]
    assert sorted(p.patient_id for p in per_patient) == _pids(cohort_copy)
    assert all("Excel" in p.message for p in per_patient)
    assert cohort.usable_ids("rfs") == [] and len(cohort.usable_ids("images")) == 4


@pytest.mark.parametrize("col,value,code,text", [
    (schema.RFS, "1,214", "bad_rfs", "thousands separator"),
    (schema.RFS, "inf", "bad_rfs", "finite"),
    (schema.RELAPSE, "yes", "bad_relapse", "'yes'"),
])
def test_unparsable_outcomes_are_not_called_missing(cohort_copy, col, value, code, text):
    df = pd.read_csv(_csv(cohort_copy), dtype=str)
    df.loc[0, col] = value
    df.to_csv(_csv(cohort_copy), index=False)
    cohort = load_cohort(cohort_copy)
    pid = df.loc[0, schema.PATIENT_ID]
    p = _found(cohort, code, pid)
    assert text in p.message and not [q for q in cohort.problems_for(pid) if "missing" in q.code]
    assert pid not in cohort.usable_ids("rfs")


def test_blank_and_comment_lines_make_no_phantom_patients(cohort_copy):
    lines = _csv(cohort_copy).read_text().splitlines()
    n_cols = lines[0].count(",")
    lines = ["# exported 2025-01-01", lines[0], "", lines[1], "," * n_cols, "  # a note", *lines[2:], ""]
    _csv(cohort_copy).write_text("\n".join(lines) + "\n")
    cohort = load_cohort(cohort_copy)
    assert sorted(cohort.patients) == _pids(cohort_copy)
    assert not [p for p in cohort.problems if p.severity == "error"], [str(p) for p in cohort.problems]
    assert len(cohort.usable_ids("rfs")) == 4


def test_duplicate_lines_are_file_lines_despite_comments(cohort_copy):
    lines = _csv(cohort_copy).read_text().splitlines()
    lines = ["# header comment", lines[0], lines[1], lines[1], *lines[2:]]
    _csv(cohort_copy).write_text("\n".join(lines) + "\n")
    p = _found(load_cohort(cohort_copy), "duplicate_id")
    assert "lines [3, 4]" in p.message


def test_missing_dm_column_is_said(cohort_copy):
    df = pd.read_csv(_csv(cohort_copy), dtype=str).drop(columns=[schema.DM])
    df.to_csv(_csv(cohort_copy), index=False)
    cohort = load_cohort(cohort_copy)
    assert schema.DM in _found(cohort, "no_dm_column").message and cohort.usable_ids("dm") == []


def test_validate_cli_on_a_cohort_broken_every_way_prints_no_traceback(cohort_copy, tmp_path):
    a, b, c, d = _pids(cohort_copy)
    _ct(cohort_copy, a).write_bytes(b"")
    _pet(cohort_copy, b).unlink()
    _pet(cohort_copy, b).symlink_to(tmp_path / "nowhere.nii.gz")
    _lab(cohort_copy, c).rename(cohort_copy / c / f"{c}__seg.nii.gz")
    (cohort_copy / d / "deep").mkdir()
    for f in list((cohort_copy / d).glob("*.nii.gz")):
        f.rename(cohort_copy / d / "deep" / f.name)
    _csv(cohort_copy).write_bytes(b"PK\x03\x04junk")
    r = subprocess.run([sys.executable, "-m", "hnc_petct.cli", "validate", str(cohort_copy)], capture_output=True,
                       text=True, timeout=300)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-2000:]
    for code in ("empty_file", "broken_symlink", "unrecognised_file", "too_deep", "unreadable_csv"):
        assert code in r.stdout, r.stdout


def test_non_patient_nested_folders_and_hidden_caches_are_not_patients(cohort_copy, tmp_path):
    pid = _pids(cohort_copy)[0]
    (cohort_copy / "predictions" / "fold_0").mkdir(parents=True)
    shutil.copy(_lab(cohort_copy, pid), cohort_copy / "predictions" / "fold_0" / "case.nii.gz")
    (cohort_copy / ".cache" / "x").mkdir(parents=True)
    shutil.copy(_ct(cohort_copy, pid), cohort_copy / ".cache" / "x" / f"{pid}__CT.nii.gz")
    (cohort_copy / "old.csv").symlink_to(tmp_path / "gone.csv")
    cohort = load_cohort(cohort_copy)
    assert sorted(cohort.patients) == [p for p in _pids(cohort_copy) if p not in ("predictions", ".cache")]
    assert not [p for p in cohort.problems if p.severity == "error"], [str(p) for p in cohort.problems]
