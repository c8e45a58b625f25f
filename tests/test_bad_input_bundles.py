"""Bundle inference on bad cohorts (issue 13): the shared cohort checks, failures.json, no data loss,
one-line errors at the bundle boundary. A tiny RFS ensemble (8 patients, 16^3, 1 epoch) is trained once."""

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

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "hecktor_rfs_fusion"


@pytest.fixture(scope="module")
def rfs_model(tmp_path_factory):
    from hnc_core.synth import generate_cohort
    from survival_head.rfs.export import train_and_export

    root = tmp_path_factory.mktemp("rfs_bad")
    generate_cohort(root / "cohort", n=8, seed=0, progress=False)
    train_and_export(cohort_dir=root / "cohort", models_dir=root / "models", image_size=16, max_epochs=1,
                     batch_size=4, n_folds=2, freeze_backbone=True, progress=False)
    return root


@pytest.fixture()
def cohort(rfs_model, tmp_path):
    dst = tmp_path / "cohort"
    shutil.copytree(rfs_model / "cohort", dst)
    return dst


def _pids(cohort):
    return sorted(p.name for p in cohort.iterdir() if p.is_dir())


def _predict(cohort, rfs_model, out, **kw):
    from survival_head.rfs.workflows import predict

    return predict(cohort, rfs_model / "models", out, batch_size=4, progress=False, **kw)


def _edit(path, fn):
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    out = fn(img, arr)
    if isinstance(out, np.ndarray):
        new = sitk.GetImageFromArray(out)
        new.CopyInformation(img)
        out = new
    sitk.WriteImage(out or img, str(path))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nan(img, arr):
    arr[2, 3, 4] = np.nan
    return arr


def _shift(img, arr):
    img.SetOrigin(tuple(np.array(img.GetOrigin()) + [0.0, 0.0, 1000.0]))
    return img


def test_inference_rejects_what_validate_rejects(cohort, rfs_model, tmp_path):
    a, b, c, d = _pids(cohort)[:4]
    _truncate(cohort / a / f"{a}__CT.nii.gz")
    _edit(cohort / b / f"{b}__PT.nii.gz", _nan)
    _edit(cohort / c / f"{c}__CT.nii.gz", _nan)
    _edit(cohort / d / f"{d}__PT.nii.gz", _shift)
    out = tmp_path / "out"
    res = _predict(cohort, rfs_model, out)
    fails = {f["PatientID"]: f for f in json.loads((out / "failures.json").read_text())}
    assert set(fails) == {a, b, c, d}
    assert fails[a]["file"].endswith(f"{a}__CT.nii.gz") and "truncated" in fails[a]["error"]
    assert fails[b]["file"].endswith(f"{b}__PT.nii.gz") and "NaN" in fails[b]["error"]
    assert fails[c]["file"].endswith(f"{c}__CT.nii.gz") and "NaN" in fails[c]["error"]
    assert fails[d]["file"].endswith(f"{d}__PT.nii.gz") and "overlap" in fails[d]["error"]
    preds = {p["PatientID"] for p in json.loads((out / "predictions.json").read_text())}
    assert preds == set(_pids(cohort)) - {a, b, c, d} == set(res["ids"])


def test_unreadable_clinical_csv_refused_unless_opted_in(cohort, rfs_model, tmp_path):
    from hnc_core import schema
    from hnc_core.guards import NothingPredicted

    csv = cohort / schema.CLINICAL_CSV_NAME
    shutil.make_archive(str(tmp_path / "book"), "zip", cohort / _pids(cohort)[0])
    shutil.copy(tmp_path / "book.zip", csv)  # an .xlsx (a zip) renamed to .csv
    with pytest.raises(NothingPredicted):
        _predict(cohort, rfs_model, tmp_path / "out")
    fails = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert len(fails) == 8 and all("Excel" in f["error"] and "allow_missing_clinical" in f["error"] for f in fails)
    assert not (tmp_path / "out" / "predictions.json").exists()
    res = _predict(cohort, rfs_model, tmp_path / "out2", allow_missing_clinical=True)
    assert len(res["ids"]) == 8
    import pandas as pd

    table = pd.read_csv(tmp_path / "out2" / "predictions.csv")
    assert table["warning"].str.contains("clinical data unavailable").all()


def test_all_bad_keeps_earlier_predictions_and_fails(cohort, rfs_model, tmp_path):
    from hnc_core.guards import NothingPredicted

    out = tmp_path / "out"
    _predict(cohort, rfs_model, out)
    before = (out / "predictions.json").read_text()
    assert len(json.loads(before)) == 8
    for pid in _pids(cohort):
        _truncate(cohort / pid / f"{pid}__CT.nii.gz")
    with pytest.raises(NothingPredicted, match="no patient"):
        _predict(cohort, rfs_model, out)
    assert (out / "predictions.json").read_text() == before
    assert len(json.loads((out / "failures.json").read_text())) == 8


def test_partial_run_never_replaces_earlier_predictions(cohort, rfs_model, tmp_path):
    out = tmp_path / "out"
    _predict(cohort, rfs_model, out)
    before = (out / "predictions.json").read_text()
    bad = _pids(cohort)[0]
    _truncate(cohort / bad / f"{bad}__CT.nii.gz")
    res = _predict(cohort, rfs_model, out)
    assert res["partial"] and (out / "predictions.json").read_text() == before
    partial = json.loads((out / "predictions.partial.json").read_text())
    assert len(partial) == 7 and bad not in {p["PatientID"] for p in partial}


def test_output_inside_cohort_refused(cohort, rfs_model):
    from hnc_core.guards import OutputPathError

    with pytest.raises(OutputPathError, match="inside the input folder"):
        _predict(cohort, rfs_model, cohort / "predictions")


def _bundle(cohort, models, out, cwd):
    cmd = [sys.executable, "-W", "ignore", "-m", "monai.bundle", "run", "--config_file",
           str(BUNDLE / "configs" / "inference.json"), "--progress", "False", "--dataset_dir", str(cohort),
           "--models_dir", str(models), "--output_dir", str(out), "--image_size", "16"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})


@pytest.mark.parametrize("damage", ["checksum", "missing"])
def test_bundle_weight_errors_are_one_line(cohort, rfs_model, tmp_path, damage):
    models = tmp_path / "models"
    shutil.copytree(rfs_model / "models", models)
    weights = models / "model.pt"  # the whole ensemble inference.json loads
    if damage == "checksum":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:
        weights.unlink()
    proc = _bundle(cohort, models, tmp_path / "out", tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and ("checksum mismatch" if damage == "checksum" else "not found") in errors[0]


def test_preprocessing_failure_names_the_file_not_the_transform(tmp_path, tiny_cohort):
    from types import SimpleNamespace

    from survival_head.rfs.data import _failure, preprocess_patient

    pid = sorted(p.name for p in tiny_cohort.iterdir() if p.is_dir())[0]
    bad = tmp_path / "bad__CT.nii.gz"
    bad.write_bytes(b"garbage")
    rec = SimpleNamespace(ct=bad, pet=tiny_cohort / pid / f"{pid}__PT.nii.gz")
    with pytest.raises(Exception) as info:
        preprocess_patient(pid, rec.ct, rec.pet, 16)
    f = _failure(pid, rec, info.value)
    assert f["file"] == str(bad) and "object at 0x" not in f["error"] and "bad__CT.nii.gz" in f["error"]


def test_bundle_run_on_bad_cohort_lists_failures_and_keeps_earlier_predictions(cohort, rfs_model, tmp_path):
    out = tmp_path / "out"
    proc = _bundle(cohort, rfs_model / "models", out, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = (out / "predictions.json").read_text()
    assert len(json.loads(before)) == 8
    bad = _pids(cohort)[0]
    _edit(cohort / bad / f"{bad}__PT.nii.gz", _nan)
    proc = _bundle(cohort, rfs_model / "models", out, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "predictions.json").read_text() == before
    fails = json.loads((out / "failures.json").read_text())
    assert [f["PatientID"] for f in fails] == [bad] and "NaN" in fails[0]["error"]
    assert len(json.loads((out / "predictions.partial.json").read_text())) == 7
    for pid in _pids(cohort):
        _truncate(cohort / pid / f"{pid}__CT.nii.gz")
    proc = _bundle(cohort, rfs_model / "models", out, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")][0].count("no patient") == 1
    assert (out / "predictions.json").read_text() == before
