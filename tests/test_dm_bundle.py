"""The DM bundle through the MONAI bundle CLI (subprocess, CPU): train, evaluate, inference, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "hnscc_distant_metastasis"


def shared_cohort(factory):
    from hnc_core.synth import generate_cohort

    root = factory.getbasetemp() / "dm_shared_cohort"
    if not (root / "ground_truth.csv").is_file():
        generate_cohort(root, n=16, seed=3, progress=False)
    return root


def bundle_run(config: str, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLE / "configs" / config),
           "--progress", "False", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cohort = shared_cohort(tmp_path_factory)
    cache = tmp_path_factory.getbasetemp() / "dm_shared_fast_cache"
    out = tmp_path_factory.mktemp("dm_bundle")
    bundle_run("train.json", out, "--dataset_dir", str(cohort), "--output_dir", str(out / "train"),
               "--model_dir", str(out / "models"), "--radiomics_cache", str(cache), "--radiomics_params", "fast",
               "--image_size", "32", "--window_size", "4", "--feature_size", "6", "--max_epochs", "1", "--n_folds", "3",
               "--k", "12",
               "--workers", "2")
    return cohort, cache, out


def test_train_writes_verified_model_and_cv_metrics(trained):
    _, _, out = trained
    meta = json.loads((out / "models" / "model_meta.json").read_text())
    from survival_head.io.checkpoints import sha256_file

    assert meta["sha256"] == sha256_file(out / "models" / "model.pt")
    assert meta["config"]["image_size"] == 32 and meta["config"]["max_epochs"] == 1
    assert 1 <= len(meta["selector"]["selected"]) <= 12 and meta["selector"]["k"] == len(meta["selector"]["selected"])
    assert 0.0 <= meta["threshold"] <= 1.0
    m = json.loads((out / "train" / "train_metrics.json").read_text())
    assert m["cv"]["n"] == 16 and 0.0 <= m["cv"]["auc"] <= 1.0
    assert (out / "train" / "roc_cv.png").stat().st_size > 1000
    assert len(pd.read_csv(out / "train" / "cv_predictions.csv")) == 16


def test_evaluate_reports_metrics_and_roc(trained):
    cohort, cache, out = trained
    bundle_run("evaluate.json", out, "--dataset_dir", str(cohort), "--output_dir", str(out / "eval"),
               "--model_dir", str(out / "models"), "--radiomics_cache", str(cache))
    m = json.loads((out / "eval" / "metrics.json").read_text())
    for k in ("auc", "accuracy", "sensitivity", "specificity"):
        assert 0.0 <= m[k] <= 1.0
    n_dm = int(pd.read_csv(cohort / "HECKTOR_2025_Training_Task_2.csv")["DistantMetastasis"].sum())
    assert m["n"] == 16 and m["n_positive"] == n_dm and len(m["auc_ci95"]) == 2
    assert (out / "eval" / "roc.png").is_file()


def test_inference_from_other_cwd_with_mask_dir(trained, tmp_path):
    cohort, cache, out = trained
    masks = tmp_path / "pred_masks"
    masks.mkdir()
    ids = sorted(p.name for p in cohort.iterdir() if (p / f"{p.name}.nii.gz").is_file())
    for pid in ids[1:]:  # the first patient has no predicted mask: reported, the rest predicted
        shutil.copy(cohort / pid / f"{pid}.nii.gz", masks / f"{pid}.nii.gz")
    bundle_run("inference.json", tmp_path, "--dataset_dir", str(cohort), "--output_dir", "preds",
               "--model_dir", str(out / "models"), "--radiomics_cache", str(cache), "--mask_dir", str(masks))
    df = pd.read_csv(tmp_path / "preds" / "predictions.csv")
    meta = json.loads((out / "models" / "model_meta.json").read_text())
    assert list(df.columns) == ["PatientID", "dm_probability", "dm_predicted"]
    assert sorted(df.PatientID) == ids[1:]
    assert df.dm_probability.between(0, 1).all()
    assert ((df.dm_probability >= meta["threshold"]).astype(int) == df.dm_predicted).all()
    js = json.loads((tmp_path / "preds" / "predictions.json").read_text())
    assert ids[0] in js["errors"] and len(js["predictions"]) == len(ids) - 1
    ev = pd.read_csv(out / "eval" / "predictions.csv") if (out / "eval" / "predictions.csv").is_file() else None
    if ev is not None:  # same masks, same model: same probabilities as the label-based evaluation
        merged = df.merge(ev, on="PatientID", suffixes=("", "_label"))
        assert (merged.dm_probability - merged.dm_probability_label).abs().max() < 1e-5


def test_missing_or_corrupt_weights_are_clear_errors(trained, tmp_path):
    cohort, cache, out = trained
    proc = bundle_run("inference.json", tmp_path, "--dataset_dir", str(cohort), "--output_dir", "x",
                      "--model_dir", str(tmp_path / "nowhere"), check=False)
    assert proc.returncode != 0 and "model metadata not found" in proc.stderr
    proc = bundle_run("inference.json", tmp_path, "--dataset_dir", str(cohort), "--output_dir", "x",
                      "--model_dir", str(out / "models"), "--sha256", "ab" * 32, check=False)
    assert proc.returncode != 0 and "checksum mismatch" in proc.stderr
    assert not (tmp_path / "x" / "predictions.csv").exists()


def test_bundle_layout_and_metadata():
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    for k in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version",
              "required_packages_version", "task", "description", "authors", "copyright"):
        assert meta[k]
    fmt = meta["network_data_format"]
    assert set(fmt["inputs"]) == {"image", "radiomics", "clinical"} and "pred" in fmt["outputs"]
    assert fmt["inputs"]["image"]["num_channels"] == 3 and fmt["inputs"]["radiomics"]["num_channels"] == 36
    for name in ("inference", "train", "evaluate", "multi_gpu_train"):
        text = (BUNDLE / "configs" / f"{name}.json").read_text()
        json.loads(text)
        assert "/work/" not in text and "/home/" not in text
    assert "DistributedSampler" in (Path(__file__).resolve().parents[1] / "survival_head/dm/training.py").read_text()
    assert (BUNDLE / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert not (BUNDLE / "scripts").exists()
    assert (BUNDLE / "models" / ".gitignore").is_file()
    assert "MONAI Label" in (BUNDLE / "docs" / "README.md").read_text()


def test_multi_gpu_config_runs_ddp_under_torchrun_on_cpu(tmp_path_factory, tmp_path):
    """multi_gpu_train.json under torchrun with 2 processes (gloo without CUDA): rank 0 writes the model,
    rank 1 only its own sub-folder; the saved model loads with its checksum."""
    cohort = shared_cohort(tmp_path_factory)
    cfg = BUNDLE / "configs"
    files = f"['{cfg / 'train.json'}','{cfg / 'multi_gpu_train.json'}']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519", "-m", "monai.bundle", "run", "--config_file", files,
           "--dataset_dir", str(cohort), "--output_dir", str(tmp_path / "train"), "--model_dir", str(tmp_path / "models"),
           "--radiomics_cache", str(tmp_path / "cache"), "--radiomics_params", "fast", "--image_size", "32",
           "--window_size", "4", "--feature_size", "6", "--max_epochs", "1", "--n_folds", "2", "--k", "12"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "train" / "train_metrics.json").is_file() and (tmp_path / "train" / "rank1").is_dir()
    assert not (tmp_path / "models" / "rank1").exists()
    from survival_head.dm.training import FittedDM

    fitted = FittedDM.load(tmp_path / "models")  # verifies the sha256 recorded by rank 0
    assert "image" in fitted.modalities
