"""Clinic app end to end on a synthetic DICOM study: stock bundle operators -> DICOM SEG, report.json, SR.

* Segmentation: the real ``bundles/hecmamba_petct_segmentation``, exported (``python -m
  nnunet_plugins.bundle.export``) from the session's tiny trained HecMamba fold (tests/nnunet_fold.py). Its label
  map on the NIfTI twin (``monai.bundle run inference.json``) is the reference the DICOM SEG, read back with
  highdicom onto the CT grid, must match. The study's CT is cropped to 64x64x32 voxels around the tumour, the
  field the tiny fold was trained on (on the whole 128x128x48 volume its 20-iteration model labels a third of
  the head, and the DM stage's radiomics on that mask take minutes).
* RFS: the real ``bundles/hecktor_rfs_fusion`` trained tiny by its own ``train.json`` (12 patients, 24^3,
  2 folds, 2 epochs); the app's risk must equal ``monai.bundle run inference.json`` on the NIfTI twin of
  the same patient, given as the app feeds the bundle (PET on the CT grid, the stock operator's contract).
* DM: the real ``bundles/hnscc_distant_metastasis`` (tiny), against its bundle run with the app's mask.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monai.deploy")
hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")
sitk = pytest.importorskip("SimpleITK")

from nnunet_fold import CROP_XYZ, crop_around_tumour

ROOT = Path(__file__).resolve().parents[1]
PID = "CHUP-001"
SIZE = 24


def _run(cmd, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", "nnUNet_def_n_proc": "1",
           **kw.pop("env", {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=kw.pop("timeout", 900), **kw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def setup(tmp_path_factory, nnunet_pipeline) -> dict:
    from hnc_core.dicom_synth import write_patient_study
    from hnc_core.synth import generate_cohort

    root = tmp_path_factory.mktemp("clinic_e2e")
    generate_cohort(root / "nifti", n=2, seed=0, progress=False)
    # the CT cropped around the tumour, as the tiny fold was trained (64x64x32): its masks stay tumour-sized
    crop_around_tumour(root / "nifti")
    generate_cohort(root / "train", n=12, seed=11, progress=False)
    info = write_patient_study(root / "nifti", PID, root / "study", seed=0)
    bundles = root / "bundles"
    rfs = bundles / "hecktor_rfs_fusion"
    shutil.copytree(ROOT / "bundles" / "hecktor_rfs_fusion", rfs, ignore=shutil.ignore_patterns("models", "cache"))
    # A release's metadata describes the model it ships: this one is trained at SIZE^3.
    meta_file = rfs / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = [SIZE] * 3
    meta_file.write_text(json.dumps(meta, indent=2))
    _run([sys.executable, "-W", "ignore", "-m", "monai.bundle", "run", "--config_file",
          str(rfs / "configs" / "train.json"), "--dataset_dir", str(root / "train"), "--cache_dir",
          str(root / "cache"), "--image_size", str(SIZE), "--max_epochs", "2", "--batch_size", "4",
          "--n_folds", "2", "--freeze_backbone", "True", "--progress", "False"], cwd=root)
    assert (rfs / "models" / "model.ts").is_file()
    seg = bundles / "hecmamba_petct_segmentation"
    shutil.copytree(ROOT / "bundles" / "hecmamba_petct_segmentation", seg, ignore=shutil.ignore_patterns("models"))
    _run([sys.executable, "-W", "ignore", "-m", "nnunet_plugins.bundle.export", str(nnunet_pipeline["fold_dir"]),
          str(seg)], cwd=root)
    # The NIfTI twin in the form the app feeds the bundles: PET resampled (linear) onto the CT grid.
    twin = root / "twin_on_ct"
    (twin / PID).mkdir(parents=True)
    ct = sitk.ReadImage(str(root / "nifti" / PID / f"{PID}__CT.nii.gz"))
    pet = sitk.ReadImage(str(root / "nifti" / PID / f"{PID}__PT.nii.gz"))
    pet_ct = sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    sitk.WriteImage(ct, str(twin / PID / f"{PID}__CT.nii.gz"))
    sitk.WriteImage(pet_ct, str(twin / PID / f"{PID}__PT.nii.gz"))
    import pandas as pd

    csv = pd.read_csv(root / "nifti" / "HECKTOR_2025_Training_Task_2.csv")
    csv[csv.PatientID == PID].to_csv(twin / "HECKTOR_2025_Training_Task_2.csv", index=False)
    _run([sys.executable, "-W", "ignore", "-m", "monai.bundle", "run", "--config_file",
          str(rfs / "configs" / "inference.json"), "--dataset_dir", str(twin), "--output_dir",
          str(root / "rfs_nifti"), "--progress", "False"], cwd=root)
    bundle_risk = {r["PatientID"]: r["Prediction"]
                   for r in json.loads((root / "rfs_nifti" / "predictions.json").read_text())}[PID]
    # the segmentation bundle on the twin, in nnU-Net's input layout (CT _0000, PET on the CT grid _0001)
    seg_in = root / "seg_in"
    seg_in.mkdir()
    shutil.copy(twin / PID / f"{PID}__CT.nii.gz", seg_in / f"{PID}_0000.nii.gz")
    shutil.copy(twin / PID / f"{PID}__PT.nii.gz", seg_in / f"{PID}_0001.nii.gz")
    _run([sys.executable, "-W", "ignore", "-m", "monai.bundle", "run", "--config_file",
          str(seg / "configs" / "inference.json"), "--dataset_dir", str(seg_in), "--output_dir",
          str(root / "seg_nifti")], cwd=root)
    twin_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "seg_nifti" / f"{PID}.nii.gz")))
    out = root / "out"
    env = {"HNC_CLINIC_MODELS": "segmentation,rfs"}  # the DM stage waits for the DM bundle's model.ts
    app = _run(["bash", "-c", f'ulimit -s 32768 && exec "{sys.executable}" -m hnc_petct.clinic_app '
                f'-i "{root / "study"}" -o "{out}" -m "{bundles}" -l WARN'], env=env, cwd=root)
    return {"root": root, "out": out, "info": info, "bundle_risk": bundle_risk, "rfs": rfs, "seg": seg,
            "ct": ct, "pet_ct": pet_ct, "twin_labels": twin_labels, "app_log": app.stderr}


def _seg_labels(out: Path, study: Path) -> tuple[np.ndarray, list]:
    """The app's DICOM SEG read back with highdicom as a (slices, rows, columns) label map on the CT grid."""
    seg = hd.seg.segread(next((out / "seg").glob("*.dcm")))
    cts = sorted((pydicom.dcmread(f) for f in (study / "CT").glob("*.dcm")),
                 key=lambda d: float(d.ImagePositionPatient[2]))
    labels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in cts], combine_segments=True,
        skip_overlap_checks=True, ignore_spatial_locations=True)
    return np.asarray(labels), cts


@pytest.mark.slow
def test_outputs_complete_and_nothing_staged(setup):
    out = setup["out"]
    assert (out / "report.json").is_file()
    assert len(list((out / "seg").glob("*.dcm"))) == 1 and len(list((out / "sr").glob("*.dcm"))) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


@pytest.mark.slow
def test_dicom_seg_reads_back_onto_the_ct_grid(setup):
    """The HecMamba bundle's labels, through the stock operator and DICOM SEG writer, equal its bundle run on the
    NIfTI twin (SUV from DICOM is within 1e-4 of the twin, so only voxels at a decision boundary may flip)."""
    seg = hd.seg.segread(next((setup["out"] / "seg").glob("*.dcm")))
    labels, cts = _seg_labels(setup["out"], setup["root"] / "study")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == setup["info"]["CT"]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["GTVp", "GTVn"]
    expected = setup["twin_labels"]
    assert labels.shape == expected.shape == (len(cts), cts[0].Rows, cts[0].Columns) == CROP_XYZ[::-1]
    assert set(np.unique(expected)) == {0, 1, 2}
    assert (labels != expected).mean() < 1e-3
    rep = json.loads((setup["out"] / "report.json").read_text())
    vox_ml = float(np.prod(setup["ct"].GetSpacing())) / 1000
    assert rep["segmentation"]["volume_ml"]["GTVp"] == pytest.approx((labels == 1).sum() * vox_ml, abs=1e-3)
    model_ts = setup["seg"] / "models" / "model.ts"  # what the stock operator loads from the bundle folder
    assert rep["segmentation"]["model"]["model_file"] == "models/model.ts"
    assert rep["segmentation"]["model"]["model_sha256"] == hashlib.sha256(model_ts.read_bytes()).hexdigest()
    assert rep["segmentation"]["model"]["name"] == "HecMamba PET/CT GTV segmentation"


@pytest.mark.slow
def test_rfs_risk_equals_the_bundle_on_the_nifti_twin(setup):
    rep = json.loads((setup["out"] / "report.json").read_text())
    assert rep["rfs"]["risk"] == pytest.approx(setup["bundle_risk"], rel=1e-3, abs=1e-4)
    model_ts = setup["rfs"] / "models" / "model.ts"
    assert rep["rfs"]["model"]["model_ts_sha256"] == hashlib.sha256(model_ts.read_bytes()).hexdigest()
    assert rep["rfs"]["model"]["version"] == json.loads((setup["rfs"] / "configs" / "metadata.json")
                                                        .read_text())["version"]
    assert rep["inputs"]["CT"]["SeriesInstanceUID"] == setup["info"]["CT"]
    assert rep["inputs"]["PT"]["SeriesInstanceUID"] == setup["info"]["PT"]
    assert rep["dm"] is None and any("dm model not run" in w for w in rep["warnings"])


@pytest.mark.slow
def test_structured_report_carries_the_same_results(setup):
    rep = json.loads((setup["out"] / "report.json").read_text())
    sr = pydicom.dcmread(next((setup["out"] / "sr").glob("*.dcm")))
    assert sr.Modality == "SR" and sr.PatientID == PID
    assert sr.StudyInstanceUID == setup["info"]["StudyInstanceUID"]
    text = "\n".join(str(item.get("TextValue", "")) for item in sr.ContentSequence)
    assert f"{rep['rfs']['risk']:.4f}" in text and "GTVp" in text


@pytest.mark.slow
def test_dm_probability_equals_the_bundle_on_the_nifti_twin(setup, tmp_path):
    """All three models: the app's DM probability = ``monai.bundle run inference.json`` with the app's mask."""
    from hnc_core.synth import generate_cohort

    root = setup["root"]
    dm = root / "bundles" / "hnscc_distant_metastasis"
    if not (dm / "models" / "model.ts").is_file():
        shutil.copytree(ROOT / "bundles" / "hnscc_distant_metastasis", dm, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("models", "eval", "radiomics_cache"))
        generate_cohort(root / "train_dm", n=16, seed=3, progress=False)  # >= 2 DM cases per fold
        _run([sys.executable, "-W", "ignore", "-m", "monai.bundle", "run", "--config_file",
              str(dm / "configs" / "train.json"), "--dataset_dir", str(root / "train_dm"), "--output_dir",
              str(root / "dm_train"), "--model_dir", str(dm / "models"), "--radiomics_cache", str(root / "dm_cache"),
              "--radiomics_params", "fast", "--image_size", "32", "--window_size", "4", "--feature_size", "6",
              "--max_epochs", "1", "--n_folds", "2", "--k", "12", "--workers", "1", "--progress", "False"], cwd=root)
    out = tmp_path / "out"
    _run(["bash", "-c", f'ulimit -s 32768 && exec "{sys.executable}" -m hnc_petct.clinic_app '
          f'-i "{root / "study"}" -o "{out}" -m "{root / "bundles"}" -l WARN'], cwd=root)
    rep = json.loads((out / "report.json").read_text())
    # the bundle CLI on the NIfTI twin, with the app's predicted mask (its DICOM SEG read back) as its mask
    masks = tmp_path / "masks"
    masks.mkdir()
    lab = sitk.GetImageFromArray(_seg_labels(out, root / "study")[0].astype(np.uint8))
    lab.CopyInformation(setup["ct"])
    sitk.WriteImage(lab, str(masks / f"{PID}.nii.gz"))
    _run([sys.executable, "-W", "ignore", "-m", "monai.bundle", "run", "--config_file",
          str(dm / "configs" / "inference.json"), "--dataset_dir", str(root / "twin_on_ct"), "--output_dir",
          str(tmp_path / "dm_nifti"), "--model_dir", str(dm / "models"), "--radiomics_cache",
          str(tmp_path / "dm_cache"), "--mask_dir", str(masks), "--progress", "False"], cwd=root)
    import pandas as pd

    bundle_p = pd.read_csv(tmp_path / "dm_nifti" / "predictions.csv").set_index("PatientID").loc[PID, "dm_probability"]
    assert rep["dm"]["probability"] == pytest.approx(float(bundle_p), abs=1e-5)
    assert rep["dm"]["class"] == ("high risk" if rep["dm"]["probability"] >= rep["dm"]["threshold"] else "low risk")
    assert rep["dm"]["model"]["model_ts_sha256"] == hashlib.sha256((dm / "models" / "model.ts").read_bytes()).hexdigest()
