"""End-to-end on CPU through the real CLIs, without nnUNet_extTrainer set: convert -> plan/preprocess ->
train (tiny HecMamba trainer) -> predict -> seg-evaluate. One session-scoped run, several assertions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TRAINER = "HecMambaTrainer_2epochs_10iters"
BIN = Path(sys.executable).parent


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"), nnUNet_results=str(root / "res"),
               nnUNet_compile="f", OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    return env


def _run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    import time

    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    print(f"{Path(cmd[0]).name} {cmd[1]}: {time.perf_counter() - t0:.1f} s")
    assert res.returncode == 0, f"{cmd[0]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _shrink_plans(plans_file: Path) -> None:
    """Tiny 3-stage network at a 16x32x32 patch so CPU training takes seconds."""
    plans = json.loads(plans_file.read_text())
    cfg = plans["configurations"]["3d_fullres"]
    cfg.update(patch_size=[16, 32, 32], batch_size=2)
    arch = cfg["architecture"]["arch_kwargs"]
    arch.update(n_stages=3, features_per_stage=[8, 16, 32], kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]], n_conv_per_stage=[1, 1, 1], n_conv_per_stage_decoder=[1, 1])
    plans_file.write_text(json.dumps(plans, indent=2))


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    from hnc_core.synth import generate_cohort

    root = tmp_path_factory.mktemp("e2e")
    env = _env(root)
    cohort = root / "cohort"
    generate_cohort(cohort, n=6, seed=3, size="small", progress=False)
    unlabelled = sorted(p for p in cohort.iterdir() if p.is_dir())[-1]
    (unlabelled / f"{unlabelled.name}.nii.gz").unlink()  # -> imagesTs
    out = {"root": root, "env": env, "test_id": unlabelled.name}
    out["convert"] = _run([str(BIN / "hnc-petct"), "nnunet-convert", str(cohort), "--dataset-id", "501"], env)
    _run([str(BIN / "nnUNetv2_plan_and_preprocess"), "-d", "501", "-c", "3d_fullres", "-np", "1",
          "--verify_dataset_integrity"], env)
    _shrink_plans(root / "pre" / "Dataset501_HECKTOR" / "nnUNetPlans.json")
    _run([str(BIN / "nnUNetv2_preprocess"), "-d", "501", "-c", "3d_fullres", "-np", "1"], env)
    out["train"] = _run([str(BIN / "nnUNetv2_train"), "501", "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu"],
                        {**env, "nnUNet_n_proc_DA": "0"})
    raw = root / "raw" / "Dataset501_HECKTOR"
    inp, gt = root / "pred_in", root / "gt"
    inp.mkdir()
    gt.mkdir()
    for lab in sorted((raw / "labelsTr").glob("*.nii.gz"))[:2]:
        shutil.copy(lab, gt / lab.name)
        for ch in ("0000", "0001"):
            src = raw / "imagesTr" / lab.name.replace(".nii.gz", f"_{ch}.nii.gz")
            shutil.copy(src, inp / src.name)
    out["predict"] = _run([str(BIN / "nnUNetv2_predict"), "-i", str(inp), "-o", str(root / "pred"), "-d", "501",
                           "-c", "3d_fullres", "-f", "0", "-tr", TRAINER, "-device", "cpu", "-npp", "1", "-nps", "1",
                           "--disable_tta"], env)
    out["evaluate"] = _run([str(BIN / "hnc-petct"), "seg-evaluate", str(root / "pred"), str(gt),
                            "--tolerance-mm", "2"], env)
    return out


@pytest.mark.slow
def test_conversion_layout(pipeline):
    raw = pipeline["root"] / "raw" / "Dataset501_HECKTOR"
    ds = json.loads((raw / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT", "1": "PET"}
    assert ds["labels"] == {"background": 0, "GTVp": 1, "GTVn": 2}
    assert ds["numTraining"] == 5 == len(list((raw / "labelsTr").glob("*.nii.gz")))
    assert sorted(p.name for p in (raw / "imagesTs").iterdir()) == [
        f"{pipeline['test_id']}_0000.nii.gz", f"{pipeline['test_id']}_0001.nii.gz"]


@pytest.mark.slow
def test_training_found_trainer_without_env_and_finished(pipeline):
    res_dir = pipeline["root"] / "res" / "Dataset501_HECKTOR" / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_0"
    assert (res_dir / "checkpoint_final.pth").exists()
    log = "".join(p.read_text() for p in res_dir.glob("training_log_*.txt"))
    assert "HecMamba: AdamW" in log and "Epoch 1" in log
    import torch

    ckpt = torch.load(res_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert any(k.endswith("mamba.A_log") for k in ckpt["network_weights"])
    assert ckpt["trainer_name"] == TRAINER


@pytest.mark.slow
def test_prediction_and_evaluation(pipeline):
    preds = sorted((pipeline["root"] / "pred").glob("*.nii.gz"))
    assert len(preds) == 2
    summary = json.loads((pipeline["root"] / "pred" / "summary.json").read_text())
    assert summary["n_cases"] == 2
    assert set(summary["per_class"]) == {"GTVp", "GTVn"}
    assert 0.0 <= summary["gtvn_detection"]["f1"] <= 1.0
    assert (pipeline["root"] / "pred" / "per_case.csv").read_text().count("\n") == 5  # header + 2 cases x 2


@pytest.mark.slow
def test_convert_rerun_is_idempotent(pipeline):
    raw = pipeline["root"] / "raw" / "Dataset501_HECKTOR"
    before = {p: p.stat().st_mtime_ns for p in raw.rglob("*") if p.is_file()}
    cohort = pipeline["root"] / "cohort"
    _run([str(BIN / "hnc-petct"), "nnunet-convert", str(cohort), "--dataset-id", "501"], pipeline["env"])
    assert {p: p.stat().st_mtime_ns for p in raw.rglob("*") if p.is_file()} == before
