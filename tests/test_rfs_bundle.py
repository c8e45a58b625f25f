"""End-to-end: the bundle's train / evaluate / inference configs through ``python -m monai.bundle run``
(subprocess, from another working directory) on a 12-patient synthetic cohort at 24^3 (one trained bundle shared by the session), plus the
correctness guards that need trained artefacts (shared preprocessing, train-only encoder, failures,
checksums, TorchScript export)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "hecktor_rfs_fusion"
CONFIGS = BUNDLE / "configs"
SIZE = 24
N_PATIENTS = 12


def _bundle_run(config: str, cwd: Path, *args: str, configs: Path = CONFIGS) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-W", "ignore", "-m", "monai.bundle", "run", "--config_file", str(configs / config),
           "--progress", "False", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def rfs_cohort(tmp_path_factory) -> Path:
    from hnc_core.synth import generate_cohort

    out = tmp_path_factory.mktemp("rfs_cohort")
    generate_cohort(out, n=N_PATIENTS, seed=11, progress=False)
    return out


@pytest.fixture(scope="session")
def trained(rfs_cohort, tmp_path_factory) -> dict:
    """Bundle train.json in a copy of the bundle (models/ inside it, as a user would): 3 folds, 24^3, 2 epochs,
    frozen backbone (CPU budget); default clinical set."""
    work = tmp_path_factory.mktemp("rfs_work")
    bundle = work / "bundle"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("cache", "models", "eval"))
    models = bundle / "models"
    proc = _bundle_run("train.json", work, "--dataset_dir", str(rfs_cohort), "--cache_dir", str(work / "cache"),
                       "--image_size", str(SIZE), "--max_epochs", "2", "--batch_size", "4", "--n_folds", "3",
                       "--freeze_backbone", "True", configs=bundle / "configs")
    return {"models": models, "work": work, "bundle": bundle, "configs": bundle / "configs",
            "log": proc.stdout + proc.stderr, "manifest": json.loads((models / "manifest.json").read_text())}


def test_train_writes_all_folds_with_checksums(trained):
    from survival_head.io.checkpoints import sha256_file

    man = trained["manifest"]
    assert man["image_size"] == SIZE and len(man["folds"]) == 3
    for f in man["folds"]:
        assert sha256_file(trained["models"] / f["weights"]) == f["sha256"]
        assert (trained["models"] / f["encoder"]).is_file() and (trained["models"] / f["survival_model"]).is_file()
    assert abs(sum(man["ensemble"]["weights"]) - 1) < 1e-9
    assert sorted(man["oof"]["PatientID"]) == sorted(sum((f["val_ids"] for f in man["folds"]), []))


def test_encoder_fitted_on_training_part_only(trained, rfs_cohort):
    from hnc_core import schema
    from hnc_core.cohort import load_cohort
    from survival_head.features.clinical import ClinicalEncoder

    man, clin = trained["manifest"], load_cohort(rfs_cohort, check_images=False).clinical
    all_ids = man["oof"]["PatientID"]
    for f in man["folds"]:
        enc = ClinicalEncoder.load(trained["models"] / f["encoder"])
        train_ids = [i for i in all_ids if i not in set(f["val_ids"])]
        age = pd.to_numeric(clin.loc[train_ids, schema.AGE], errors="coerce")
        assert enc.medians_[schema.AGE] == pytest.approx(float(age.median()))
        filled = age.fillna(age.median())
        assert enc.means_[schema.AGE] == pytest.approx(float(filled.mean()))
    full = pd.to_numeric(clin.loc[all_ids, schema.AGE], errors="coerce")
    means = [ClinicalEncoder.load(trained["models"] / f["encoder"]).means_[schema.AGE] for f in man["folds"]]
    assert all(m != pytest.approx(float(full.fillna(full.median()).mean()), abs=1e-9) for m in means)


@pytest.fixture(scope="session")
def inferred(trained, rfs_cohort, tmp_path_factory) -> dict:
    """inference.json on a copy of the cohort in which one patient's CT is corrupt."""
    cohort = tmp_path_factory.mktemp("rfs_infer") / "cohort"
    shutil.copytree(rfs_cohort, cohort)
    bad = sorted(p.name for p in cohort.iterdir() if p.is_dir())[2]
    (cohort / bad / f"{bad}__CT.nii.gz").write_bytes(b"not a nifti file")
    out = cohort.parent / "out"
    proc = _bundle_run("inference.json", tmp_path_factory.mktemp("elsewhere"), "--dataset_dir", str(cohort),
                       "--output_dir", str(out), configs=trained["configs"])
    return {"out": out, "bad": bad, "log": proc.stdout + proc.stderr, "cohort": cohort}


def test_inference_writes_task2_predictions_and_reports_failures(inferred, trained):
    preds = json.loads((inferred["out"] / "predictions.json").read_text())
    assert len(preds) == N_PATIENTS - 1 and all(set(p) == {"PatientID", "Prediction"} for p in preds)
    assert all(np.isfinite(p["Prediction"]) for p in preds)
    assert len({round(p["Prediction"], 9) for p in preds}) > 1
    table = pd.read_csv(inferred["out"] / "predictions.csv")
    row = table[table.PatientID == inferred["bad"]]
    assert len(row) == 1 and row.status.iloc[0] == "failed" and "__CT.nii.gz" in row.error.iloc[0]
    assert inferred["bad"] in inferred["log"]  # and in the log
    fails = json.loads((inferred["out"] / "failures.json").read_text())
    assert [f["PatientID"] for f in fails] == [inferred["bad"]]


def test_training_evaluation_inference_share_one_preprocessing(inferred, trained, rfs_cohort):
    from survival_head.rfs.data import load_patient_images, preprocess_patient
    from survival_head.rfs.transforms import rfs_preprocessing

    pid = sorted(trained["manifest"]["oof"]["PatientID"])[0]
    cached = torch.load(trained["work"] / "cache" / f"S{SIZE}" / f"{pid}.pt", weights_only=True)["image"]
    infer = load_patient_images(inferred["cohort"], SIZE, "images", None, progress=False).images[pid]
    direct = rfs_preprocessing(SIZE)({"id": pid, "ct": str(rfs_cohort / pid / f"{pid}__CT.nii.gz"),
                                      "pet": str(rfs_cohort / pid / f"{pid}__PT.nii.gz")})["image"]
    again = preprocess_patient(pid, rfs_cohort / pid / f"{pid}__CT.nii.gz", rfs_cohort / pid / f"{pid}__PT.nii.gz",
                               SIZE, None)
    assert torch.equal(cached, infer) and torch.equal(infer, direct) and torch.equal(direct, again)


def test_evaluate_reports_metrics_and_km_plot(trained, rfs_cohort, tmp_path):
    out = tmp_path / "eval"
    _bundle_run("evaluate.json", tmp_path, "--dataset_dir", str(rfs_cohort), "--output_dir", str(out),
                "--n_boot", "100", configs=trained["configs"])
    m = json.loads((out / "metrics.json").read_text())
    h = m["harrell_c"]
    assert 0 <= h["ci_low"] <= h["estimate"] <= h["ci_high"] <= 1
    assert 0 <= m["uno_c"] <= 1 and 0 <= m["ibs"] <= 0.5
    assert 0 <= m["km"]["p_value"] <= 1 and sum(m["km"]["group_sizes"]) == N_PATIENTS
    assert 0.5 < m["oracle_c"] <= 1 and m["train_config"]["n_folds"] == 3
    assert (out / "km_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_or_tampered_weights_are_clear_errors(trained, rfs_cohort, tmp_path):
    from survival_head.io.checkpoints import WeightsError
    from survival_head.rfs.workflows import predict

    with pytest.raises(WeightsError, match="train"):
        predict(rfs_cohort, tmp_path / "nothing", tmp_path / "o", progress=False)
    models = tmp_path / "models"
    shutil.copytree(trained["models"], models, ignore=shutil.ignore_patterns("cache"))
    sd = torch.load(models / "fold0" / "network.pt", weights_only=True)
    sd["risk_head.bias"] += 1.0
    torch.save(sd, models / "fold0" / "network.pt")
    with pytest.raises(WeightsError, match="checksum"):
        predict(rfs_cohort, models, tmp_path / "o", progress=False)
    shutil.copy(trained["models"] / "fold0" / "network.pt", models / "fold0" / "network.pt")
    sm = json.loads((models / "fold1" / "survival_model.json").read_text())
    sm["coef"] = [-c for c in sm["coef"]]  # a negated risk: only the integrity manifest can catch it
    (models / "fold1" / "survival_model.json").write_text(json.dumps(sm))
    with pytest.raises(WeightsError, match="checksum mismatch.*survival_model"):
        predict(rfs_cohort, models, tmp_path / "o", progress=False)


def _raw_clinical(data):
    from survival_head.rfs.export import raw_clinical_vector

    rows = [data.cohort.clinical.loc[i] if i in data.cohort.clinical.index else None for i in data.ids]
    return torch.from_numpy(np.stack([raw_clinical_vector(r) for r in rows]))


def test_model_ts_is_the_whole_ensemble_and_ckpt_export_defaults_rebuild_it(trained, rfs_cohort):
    """models/model.ts written by training = every fold + clinical standardisation + ridge-Cox + fold
    normalisation + weights: equal (<= 1e-5) to the Python ensemble; ckpt_export's defaults rebuild it."""
    from survival_head.rfs.data import load_patient_images
    from survival_head.rfs.workflows import ensemble_risk

    man, models = trained["manifest"], trained["models"]
    assert man["clinical_set"] == "paper+hpv" and man["n_clinical"] == 26
    meta = json.loads((trained["configs"] / "metadata.json").read_text())  # rewritten with the trained format
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [SIZE] * 3
    assert meta["network_data_format"]["inputs"]["clinical"]["num_channels"] == 26
    data = load_patient_images(rfs_cohort, SIZE, "images", trained["work"] / "cache", progress=False)
    ref, _ = ensemble_risk(data, models, man)
    images, clin = torch.stack([data.images[i] for i in data.ids]), _raw_clinical(data)
    written = torch.jit.load(str(models / "model.ts"))
    with torch.no_grad():
        np.testing.assert_allclose(written(images, clin)[:, 0].numpy(), ref, atol=1e-5, rtol=0)
    assert bool(written.shared_backbone)  # frozen backbone: run once, not K times
    (models / "model.ts").unlink()
    cmd = [sys.executable, "-W", "ignore", "-m", "monai.bundle", "ckpt_export", "--bundle_root", str(trained["bundle"]),
           "--config_file", str(trained["configs"] / "inference.json")]
    proc = subprocess.run(cmd, cwd=trained["work"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = torch.jit.load(str(models / "model.ts"))
    with torch.no_grad():
        np.testing.assert_allclose(exported(images, clin)[:, 0].numpy(), ref, atol=1e-5, rtol=0)


def test_standard_workflow_properties_and_verify_net_in_out(trained, rfs_cohort):
    from monai.bundle import ConfigWorkflow, verify_net_in_out

    for config, kind in (("inference.json", "inference"), ("evaluate.json", "inference"), ("train.json", "train")):
        wf = ConfigWorkflow(config_file=str(trained["configs"] / config), workflow_type=kind,
                            dataset_dir=str(rfs_cohort))
        wf.initialize()
        assert wf.check_properties() == [], config
        assert Path(wf.parser.get_parsed_content("bundle_root")) == trained["bundle"].resolve()
    verify_net_in_out(net_id="network_def", meta_file=str(trained["configs"] / "metadata.json"),
                      config_file=str(trained["configs"] / "inference.json"), device="cpu", n=1,
                      extra_forward_args={"clinical": torch.rand(1, 26)})


def test_config_settings_that_differ_from_the_trained_model_are_errors(trained):
    from monai.bundle import ConfigParser

    p = ConfigParser()
    p.read_config(str(trained["configs"] / "inference.json"))
    p.read_meta(str(trained["configs"] / "metadata.json"))
    p["bundle_root"] = str(trained["bundle"])
    p["image_size"] = SIZE * 2
    with pytest.raises(RuntimeError) as err:
        p.get_parsed_content("network")
    assert "image_size = 48 in the config, 24 trained" in str(err.value.__cause__)


@pytest.mark.slow
def test_monai_deploy_stock_operator_matches_bundle_run(trained, rfs_cohort, tmp_path):
    """The stock MonaiBundleInferenceOperator serving models/model.ts (a real holoscan app, in a subprocess
    under ``ulimit -s 32768``) gives the same risks as ``monai.bundle run inference.json`` on the same patients
    (PET on the CT grid, as a DICOM front end hands it over)."""
    import SimpleITK as sitk

    from hnc_petct.deploy.bundle_app import pet_on_ct

    cohort = tmp_path / "cohort"
    shutil.copytree(rfs_cohort, cohort)
    keep = {p.parent.name for p in sorted(cohort.glob("*/*__PT.nii.gz"))[:6]}  # 6 patients keep it short
    for d in cohort.iterdir():
        if d.is_dir() and d.name not in keep:
            shutil.rmtree(d)
    for pt in cohort.glob("*/*__PT.nii.gz"):
        ct = sitk.ReadImage(str(pt).replace("__PT", "__CT"), sitk.sitkFloat32)
        sitk.WriteImage(pet_on_ct(ct, sitk.ReadImage(str(pt), sitk.sitkFloat32)), str(pt))
    _bundle_run("inference.json", tmp_path, "--dataset_dir", str(cohort), "--output_dir", str(tmp_path / "cli"),
                "--batch_size", "1", configs=trained["configs"])
    cli = json.loads((tmp_path / "cli" / "predictions.json").read_text())
    out = tmp_path / "deploy.json"
    cmd = (f"ulimit -s 32768 && exec {sys.executable} -W ignore -m hnc_petct.deploy.bundle_app rfs "
           f"--model {trained['models'] / 'model.ts'} --cohort {cohort} --out {out}")
    proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    served = json.loads(out.read_text())
    assert [p["PatientID"] for p in served] == [p["PatientID"] for p in cli] and len(cli) == 6
    np.testing.assert_allclose([p["Prediction"] for p in served], [p["Prediction"] for p in cli], atol=1e-5, rtol=0)
    assert len({round(p["Prediction"], 6) for p in served}) > 1


def test_full_backbone_training_updates_cnn_and_keeps_best_epoch():
    from survival_head.rfs.training import TrainConfig, train_network
    from survival_head.rfs.workflows import build_network

    g = torch.Generator().manual_seed(0)
    mk = lambda n: {"image": torch.rand(n, 2, 16, 16, 16, generator=g), "clinical": torch.rand(n, 26, generator=g),
                    "time": torch.arange(1.0, n + 1), "event": torch.tensor([1.0, 0.0] * (n // 2))}
    net = build_network(seed=0)
    before = net.backbone.conv1.weight.detach().clone()
    net, hist = train_network(net, mk(6), mk(4), TrainConfig(max_epochs=2, batch_size=3, progress=False))
    assert not torch.equal(before, net.backbone.conv1.weight)
    assert len(hist["val_cindex"]) == 2 and hist["best_epoch"] in (0, 1)
    assert hist["best_val_cindex"] == pytest.approx(max(np.nan_to_num(hist["val_cindex"], nan=-1)))


def test_ensemble_with_shared_frozen_backbone_equals_full_forward_per_fold(trained, rfs_cohort):
    from survival_head.rfs.clinical import encode_fixed
    from survival_head.rfs.data import load_patient_images
    from survival_head.rfs.training import predict_risk
    from survival_head.rfs.workflows import ensemble_risk, load_fold, load_manifest

    models = trained["models"]
    data = load_patient_images(rfs_cohort, SIZE, "images", trained["work"] / "cache", progress=False)
    man = load_manifest(models)
    _, fold_risks = ensemble_risk(data, models, man)
    images = torch.stack([data.images[i] for i in data.ids])
    for info, got in zip(man["folds"], fold_risks):
        net, enc, model = load_fold(models, info, man)
        ref = model.predict(predict_risk(net, images, torch.from_numpy(encode_fixed(enc, data.clinical)), features=True))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert np.std(fold_risks[0]) > 0


def test_multi_gpu_config_runs_ddp_under_torchrun_on_cpu(rfs_cohort, tmp_path):
    """multi_gpu_train.json under torchrun with 2 processes (gloo on CPU), backbone trained with DDP:
    one consistent model is written (rank 0 only), every fold's weights match the manifest checksum."""
    import hashlib

    models = tmp_path / "models"
    files = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "monai.bundle", "run", "--config_file", files,
           "--dataset_dir", str(rfs_cohort), "--models_dir", str(models), "--cache_dir", str(tmp_path / "cache"),
           "--image_size", "16", "--max_epochs", "1", "--batch_size", "4", "--n_folds", "2", "--progress", "False"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    man = json.loads((models / "manifest.json").read_text())
    assert len(man["folds"]) == 2 and man["train_config"]["freeze_backbone"] is False
    for f in man["folds"]:
        assert hashlib.sha256((models / f["weights"]).read_bytes()).hexdigest() == f["sha256"]
    assert proc.stdout.count("fold 0: val C") + proc.stderr.count("fold 0: val C") == 2  # both ranks trained
