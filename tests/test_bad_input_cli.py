"""Issue 13 through the CLIs: never write over an input, check the output before the work, messages instead
of tracebacks; seg-evaluate in physical space with the strict reader; nnunet-convert via a staging folder;
atomic writes respect the umask."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnc_core import schema


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hnc_petct.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def _no_traceback(r):
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]


def _unwritable(tmp_path) -> Path:
    """A folder this process cannot write, even as root (sysfs refuses everyone)."""
    if os.geteuid() == 0:
        return Path("/sys/hnc_petct_readonly")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


def _pids(cohort):
    return sorted(p.name for p in cohort.iterdir() if p.is_dir())


# ------------------------------------------------------------------------------------------- validate


def test_validate_json_onto_the_clinical_csv_is_refused(cohort_copy):
    csv = cohort_copy / schema.CLINICAL_CSV_NAME
    before = csv.read_bytes()
    r = _cli("validate", cohort_copy, "--json", csv)
    _no_traceback(r)
    assert r.returncode != 0 and "refusing" in r.stderr and str(cohort_copy) in r.stderr
    assert csv.read_bytes() == before


def test_validate_json_into_the_cohort_folder_is_refused(cohort_copy):
    r = _cli("validate", cohort_copy, "--json", cohort_copy / "problems.json")
    _no_traceback(r)
    assert r.returncode != 0 and "inside the input folder" in r.stderr
    assert not (cohort_copy / "problems.json").exists()


def test_validate_json_naming_a_directory_or_unwritable(cohort_copy, tmp_path):
    r = _cli("validate", cohort_copy, "--json", tmp_path)
    _no_traceback(r)
    assert r.returncode != 0 and "is a directory" in r.stderr
    r = _cli("validate", cohort_copy, "--json", _unwritable(tmp_path) / "report.json")
    _no_traceback(r)
    assert r.returncode != 0 and "cannot write" in r.stderr


# --------------------------------------------------------------------------------------- seg-evaluate


@pytest.fixture()
def seg_dirs(cohort_copy, tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for pid in _pids(cohort_copy):
        shutil.copy(cohort_copy / pid / f"{pid}.nii.gz", gt / f"{pid}.nii.gz")
        shutil.copy(cohort_copy / pid / f"{pid}.nii.gz", pred / f"{pid}.nii.gz")
    return pred, gt


def _gt_files(gt):
    return {p.name: p.read_bytes() for p in gt.iterdir()}


def test_seg_evaluate_pred_equal_gt_is_refused(seg_dirs):
    _, gt = seg_dirs
    before = _gt_files(gt)
    r = _cli("seg-evaluate", gt, gt)
    _no_traceback(r)
    assert r.returncode != 0 and "same folder" in r.stderr
    assert _gt_files(gt) == before


def test_seg_evaluate_out_into_gt_is_refused(seg_dirs):
    pred, gt = seg_dirs
    before = _gt_files(gt)
    r = _cli("seg-evaluate", pred, gt, "--out", gt / "tables")
    _no_traceback(r)
    assert r.returncode != 0 and "inside the input folder" in r.stderr
    assert _gt_files(gt) == before


def test_seg_evaluate_unwritable_out_checked_first(seg_dirs, tmp_path):
    pred, gt = seg_dirs
    r = _cli("seg-evaluate", pred, gt, "--out", _unwritable(tmp_path))
    _no_traceback(r)
    assert r.returncode == 2 and "cannot write" in r.stderr
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "summary.json").mkdir()  # an output name taken by a directory
    r = _cli("seg-evaluate", pred, gt, "--out", tmp_path / "o")
    _no_traceback(r)
    assert r.returncode == 2 and "is a directory" in r.stderr


def _rewrite(path, fn):
    img = sitk.ReadImage(str(path))
    out = fn(img, sitk.GetArrayFromImage(img))
    if isinstance(out, np.ndarray):
        new = sitk.GetImageFromArray(out)
        new.CopyInformation(img)
        out = new
    sitk.WriteImage(out, str(path))


def test_seg_evaluate_bad_predictions_are_named_not_scored(seg_dirs, tmp_path):
    pred, gt = seg_dirs
    a, b, c, d = sorted(p.name for p in pred.iterdir())
    (pred / a).write_bytes(b"")                                                   # zero bytes
    data = (pred / b).read_bytes()
    (pred / b).write_bytes(data[: len(data) // 2])                                # truncated gzip
    _rewrite(pred / c, lambda img, arr: np.where(arr > 0, 3, 0).astype(arr.dtype))  # unknown label 3
    _rewrite(pred / d, lambda img, arr: (arr > 0).astype(np.float32) * 0.7)        # probability map
    r = _cli("seg-evaluate", pred, gt, "--out", tmp_path / "o")
    _no_traceback(r)
    assert r.returncode == 1
    for name, why in ((a, "empty"), (b, "truncated"), (c, "outside"), (d, "non-integer")):
        assert any(name in ln and why in ln for ln in r.stderr.splitlines()), (name, r.stderr[-2000:])


def test_seg_evaluate_nan_prediction_refused(seg_dirs, tmp_path):
    pred, gt = seg_dirs
    name = sorted(p.name for p in pred.iterdir())[0]
    def nan(img, arr):
        arr = arr.astype(np.float32)
        arr[0, 0, 0] = np.nan
        return arr
    _rewrite(pred / name, nan)
    from nnunet_plugins.evaluate import evaluate_folder

    s = evaluate_folder(pred, gt, tmp_path / "o")
    assert [e["case"] for e in s["errors"]] == [name[:-7]] and "NaN" in s["errors"][0]["error"]


def test_seg_evaluate_compares_in_physical_space(seg_dirs, tmp_path):
    """A perfect prediction stored with a flipped axis (same physical image) scores DSC 1, not 0."""
    from nnunet_plugins.evaluate import evaluate_folder

    pred, gt = seg_dirs
    for p in pred.iterdir():
        img = sitk.ReadImage(str(p))
        sitk.WriteImage(sitk.Flip(img, [True, False, False], flipAboutOrigin=False), str(p))
    s = evaluate_folder(pred, gt, tmp_path / "o")
    assert s["per_class"]["GTVp"]["mean_dsc"] == pytest.approx(1.0)
    assert len(s["resampled_cases"]) == 4 and not s["errors"]


def test_seg_evaluate_refuses_prediction_not_covering_gt(seg_dirs, tmp_path):
    from nnunet_plugins.evaluate import evaluate_folder

    pred, gt = seg_dirs
    name = sorted(p.name for p in pred.iterdir())[0]
    _rewrite(pred / name, lambda img, arr: img[:, :, : img.GetSize()[2] // 2])
    s = evaluate_folder(pred, gt, tmp_path / "o")
    assert [e["case"] for e in s["errors"]] == [name[:-7]] and "covers only" in s["errors"][0]["error"]


# ------------------------------------------------------------------------------------------- convert


def _convert(cohort, raw, *extra):
    return _cli("nnunet-convert", cohort, "--nnunet-raw", raw, "--dataset-id", "502", *extra)


def test_convert_into_the_cohort_or_unwritable_is_refused(cohort_copy, tmp_path):
    r = _convert(cohort_copy, cohort_copy / "raw")
    _no_traceback(r)
    assert r.returncode != 0 and "inside the input folder" in r.stderr
    assert not (cohort_copy / "raw").exists()
    r = _convert(cohort_copy, _unwritable(tmp_path))
    _no_traceback(r)
    assert r.returncode != 0 and "cannot write" in r.stderr


def test_interrupted_conversion_is_redone(cohort_copy, tmp_path):
    from nnunet_plugins.convert import convert_cohort, staging_dir

    raw = tmp_path / "raw"
    pids = _pids(cohort_copy)
    bad = cohort_copy / pids[-1] / f"{pids[-1]}__CT.nii.gz"
    good = bad.read_bytes()
    # an interrupted run: make the last patient's CT fail mid-conversion (unreadable for SimpleITK only)
    import nnunet_plugins.convert as conv

    real = conv._write_case
    def dying(rec, out, with_label):
        if rec.patient_id == pids[-1]:
            raise KeyboardInterrupt
        real(rec, out, with_label)
    conv._write_case = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            convert_cohort(cohort_copy, 502, raw)
    finally:
        conv._write_case = real
    target = raw / "Dataset502_HECKTOR"
    assert not target.exists() and staging_dir(target).is_dir()  # nothing half-written in place
    out = convert_cohort(cohort_copy, 502, raw)
    assert out == target and not staging_dir(target).exists()
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [f"{p}.nii.gz" for p in pids]
    assert bad.read_bytes() == good


def test_half_written_dataset_from_older_version_is_redone(cohort_copy, tmp_path):
    from nnunet_plugins.convert import convert_cohort

    target = tmp_path / "raw" / "Dataset502_HECKTOR"
    (target / "imagesTr").mkdir(parents=True)
    pid = _pids(cohort_copy)[0]
    shutil.copy(cohort_copy / pid / f"{pid}__CT.nii.gz", target / "imagesTr" / f"{pid}_0000.nii.gz")
    out = convert_cohort(cohort_copy, 502, tmp_path / "raw")
    assert (out / "dataset.json").is_file() and len(list((out / "imagesTr").iterdir())) == 8


# -------------------------------------------------------------------------------------------- io


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    from hnc_core.io import write_json_atomic, write_text_atomic

    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        write_json_atomic(tmp_path / "b.json", {"a": 1})
    finally:
        os.umask(old)
    for f in ("a.txt", "b.json"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o666 & ~umask
