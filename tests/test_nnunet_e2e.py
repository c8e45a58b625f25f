"""End-to-end on CPU through the real CLIs, without nnUNet_extTrainer set: convert -> plan/preprocess ->
CPU plans (python -m nnunet_plugins.cpu_plans) -> train (tiny HecMamba trainer, incl. nnU-Net's final
validation) -> predict -> seg-evaluate. One session-scoped run, several assertions. The synthetic volumes are
cropped to 64x64x32 voxels around the tumour and nnU-Net uses one process (nnUNet_def_n_proc=1) so the whole
file runs in a few minutes on 2 shared cores."""

from __future__ import annotations

import json

import pytest

from nnunet_fold import PLANS, TRAINER


@pytest.fixture(scope="session")
def pipeline(nnunet_pipeline):
    """The session's one tiny trained HecMamba fold (tests/nnunet_fold.py, shared with the bundle tests)."""
    return nnunet_pipeline


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
    res_dir = pipeline["root"] / "res" / "Dataset501_HECKTOR" / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_0"
    assert (res_dir / "checkpoint_final.pth").exists()
    log = "".join(p.read_text() for p in res_dir.glob("training_log_*.txt"))
    assert "HecMamba: AdamW" in log and "Epoch 1" in log
    import numpy as np
    import torch

    # nnU-Net checkpoints hold numpy scalars/dtypes besides tensors: allow exactly those, weights-only
    safe = [np._core.multiarray.scalar, np.dtype, *{type(np.dtype(t)) for t in ("float32", "float64", "int64")}]
    with torch.serialization.safe_globals(safe):
        ckpt = torch.load(res_dir / "checkpoint_final.pth", map_location="cpu", weights_only=True)
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
def test_cpu_plans_used_and_final_validation_ran(pipeline):
    pre = pipeline["root"] / "pre" / "Dataset501_HECKTOR"
    cpu = json.loads((pre / f"{PLANS}.json").read_text())
    src = json.loads((pre / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]
    cfg = cpu["configurations"]["3d_fullres"]
    assert cpu["plans_name"] == PLANS and cfg["patch_size"] == [16, 32, 32]
    assert cfg["data_identifier"] == src["data_identifier"] and cfg["spacing"] == src["spacing"]
    fold = pipeline["root"] / "res" / "Dataset501_HECKTOR" / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_0"
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert len(list((fold / "validation").glob("*.nii.gz"))) == len(summary["metric_per_case"]) >= 1
