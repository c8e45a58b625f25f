"""The DM bundle through the MONAI bundle CLI (subprocess, CPU): train, evaluate, inference, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
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


def test_inference_rejects_bad_patients_and_keeps_earlier_predictions(trained, tmp_path):
    """Issue 13: the cohort checks apply (truncated CT, NaN CT), failures.json names file and reason, an
    all-bad cohort exits non-zero with one line and leaves the earlier predictions.json untouched."""
    import numpy as np
    import SimpleITK as sitk

    cohort, cache, out = trained
    bad = tmp_path / "cohort"
    shutil.copytree(cohort, bad)
    ids = sorted(p.name for p in bad.iterdir() if p.is_dir())
    ct0 = bad / ids[0] / f"{ids[0]}__CT.nii.gz"
    ct0.write_bytes(ct0.read_bytes()[: ct0.stat().st_size // 2])
    ct1 = bad / ids[1] / f"{ids[1]}__CT.nii.gz"
    img = sitk.ReadImage(str(ct1))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[3, 3, 3] = np.nan
    nan = sitk.GetImageFromArray(arr)
    nan.CopyInformation(img)
    sitk.WriteImage(nan, str(ct1))
    args = ("--dataset_dir", str(bad), "--output_dir", str(tmp_path / "preds"), "--model_dir", str(out / "models"),
            "--radiomics_cache", str(cache))
    bundle_run("inference.json", tmp_path, *args)
    fails = {f["PatientID"]: f for f in json.loads((tmp_path / "preds" / "failures.json").read_text())}
    assert set(fails) == {ids[0], ids[1]}
    assert fails[ids[0]]["file"] == str(ct0) and "truncated" in fails[ids[0]]["error"]
    assert fails[ids[1]]["file"] == str(ct1) and "NaN" in fails[ids[1]]["error"]
    before = (tmp_path / "preds" / "predictions.json").read_text()
    assert sorted(r["PatientID"] for r in json.loads(before)["predictions"]) == ids[2:]
    for pid in ids:
        ct = bad / pid / f"{pid}__CT.nii.gz"
        ct.write_bytes(b"")
    proc = bundle_run("inference.json", tmp_path, *args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")][0].count("no patient") == 1
    assert (tmp_path / "preds" / "predictions.json").read_text() == before


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


def test_model_ts_is_the_whole_dm_model_with_exact_input_format(trained):
    """models/model.ts written by train.json (image branch + radiomics standardisation + clinical encoding +
    FC head) gives the Python model's probabilities (<= 1e-5); its embedded metadata declares the trained
    channel counts (3 image channels at 32^3, the k radiomics the selector kept, 10 raw clinical values)."""
    import numpy as np
    import torch

    from survival_head.dm.data import load_dm_data
    from survival_head.dm.export import raw_clinical_vector
    from survival_head.dm.training import FittedDM

    cohort, cache, out = trained
    models = out / "models"
    fitted = FittedDM.load(models)
    data = load_dm_data(cohort, cache, image_size=32, fov_mm=fitted.config.fov_mm, require_labels=False,
                        radiomics_params=fitted.info.get("radiomics_params"), progress=False)
    ref = fitted.predict_proba(data)
    scripted = torch.jit.load(str(models / "model.ts"))
    rad = torch.from_numpy(data.radiomics[fitted.selector.selected_].to_numpy(float))
    cli = torch.from_numpy(np.stack([raw_clinical_vector(data.clinical.loc[i]) for i in data.ids]))
    with torch.no_grad():
        got = scripted(data.images, rad, cli)[:, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert np.ptp(got) > 0
    with zipfile.ZipFile(models / "model.ts") as z:
        fmt = json.loads(z.read("model/extra/metadata.json"))["network_data_format"]["inputs"]
    assert (fmt["image"]["num_channels"], fmt["image"]["spatial_shape"]) == (3, [32, 32, 32])
    # k is chosen by inner CV (at most --k 12): the declared count is exactly the trained selector's
    k = len(fitted.selector.selected_)
    assert 1 <= k <= 12 and fmt["radiomics"]["num_channels"] == k and fmt["clinical"]["num_channels"] == 10
    assert list(fmt["radiomics"]["channel_def"].values()) == fitted.selector.selected_


def test_documented_export_command_rewrites_the_whole_model(trained, tmp_path):
    """``python -m survival_head.dm.export BUNDLE`` (the bundle's documented re-export; MONAI's ``ckpt_export``
    defaults load the fusion net's ``model.pt`` strictly into the whole model and fail) writes a ``model.ts`` that
    equals the one training wrote (<= 1e-5)."""
    import torch

    cohort, cache, out = trained
    bundle = tmp_path / "hnscc_distant_metastasis"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    shutil.copytree(out / "models", bundle / "models")
    (bundle / "models" / "model.ts").unlink()
    proc = subprocess.run([sys.executable, "-m", "survival_head.dm.export", str(bundle)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=400, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exported = torch.jit.load(str(bundle / "models" / "model.ts"))
    reference = torch.jit.load(str(out / "models" / "model.ts"))
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, 32, 32, 32, generator=gen)
    radiomics = torch.randn(4, int(reference.rad_median.shape[0]), generator=gen, dtype=torch.float64)
    clinical = torch.zeros(4, 10)
    clinical[:, 0] = torch.tensor([45.0, 60.0, 71.0, float("nan")])
    with torch.no_grad():
        got, ref = exported(image, radiomics, clinical), reference(image, radiomics, clinical)
    assert torch.allclose(got, ref, atol=1e-5, rtol=0) and float(ref.max() - ref.min()) > 0


def test_standard_workflow_properties(trained, tmp_path):
    from monai.bundle import ConfigWorkflow

    cohort, cache, out = trained
    for config in ("inference.json", "evaluate.json"):
        wf = ConfigWorkflow(config_file=str(BUNDLE / "configs" / config), workflow_type="inference",
                            dataset_dir=str(cohort), model_dir=str(out / "models"), radiomics_cache=str(cache))
        wf.initialize()
        assert wf.check_properties() == [], config
    # MONAI's shape check of network_def against the trained model's declared inputs (embedded in model.ts); the
    # CLI cannot pass tensors as extra_forward_args, so the radiomics and clinical vectors go in from Python
    import torch
    from monai.bundle import verify_net_in_out

    with zipfile.ZipFile(out / "models" / "model.ts") as z:
        meta = json.loads(z.read("model/extra/metadata.json"))
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(meta))
    fmt = meta["network_data_format"]["inputs"]
    verify_net_in_out(net_id="network_def", meta_file=str(meta_file), config_file=str(BUNDLE / "configs" /
                      "inference.json"), device="cpu", model_dir=str(out / "models"),
                      extra_forward_args={"radiomics": torch.rand(1, fmt["radiomics"]["num_channels"],
                                                                  dtype=torch.float64),
                                          "clinical": torch.rand(1, fmt["clinical"]["num_channels"])})


@pytest.mark.slow
def test_monai_deploy_stock_operator_matches_bundle_run(trained, tmp_path):
    """The stock MonaiBundleInferenceOperator serving models/model.ts (holoscan app in a subprocess under
    ``ulimit -s 32768``; radiomics extracted by the bundle's preprocessing) gives the probabilities of
    ``monai.bundle run inference.json`` on the same patients."""
    import numpy as np

    cohort, cache, out = trained
    bundle_run("inference.json", tmp_path, "--dataset_dir", str(cohort), "--output_dir", str(tmp_path / "cli"),
               "--model_dir", str(out / "models"), "--radiomics_cache", str(cache), "--batch_size", "1")
    cli = pd.read_csv(tmp_path / "cli" / "predictions.csv")
    res = tmp_path / "deploy.json"
    cmd = (f"ulimit -s 32768 && exec {sys.executable} -W ignore -m hnc_petct.deploy.bundle_app dm "
           f"--model {out / 'models' / 'model.ts'} --cohort {cohort} --out {res}")
    proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    served = json.loads(res.read_text())
    assert [p["PatientID"] for p in served] == cli.PatientID.tolist() and len(served) == 16
    np.testing.assert_allclose([p["Prediction"] for p in served], cli.dm_probability, atol=1e-5, rtol=0)
