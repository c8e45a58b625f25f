"""End-to-end on CPU through the real CLIs, without nnUNet_extTrainer set: convert -> plan/preprocess ->
CPU plans (python -m nnunet_plugins.cpu_plans) -> train (tiny HecMamba trainer, incl. nnU-Net's final
validation) -> predict -> seg-evaluate. One session-scoped run, several assertions. The synthetic volumes are
cropped to 64x64x32 voxels around the tumour and nnU-Net uses one process (nnUNet_def_n_proc=1) so the whole
file runs in a few minutes on 2 shared cores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TRAINER = "HecMambaTrainer_2epochs_10iters"
PLANS = "nnUNetPlans_cpu"
CROP_XYZ = (64, 64, 32)
BIN = Path(sys.executable).parent


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"), nnUNet_results=str(root / "res"),
               nnUNet_compile="f", nnUNet_def_n_proc="1", OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    return env


def _run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    import time

    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    print(f"{Path(cmd[0]).name} {cmd[1]}: {time.perf_counter() - t0:.1f} s")
    assert res.returncode == 0, f"{cmd[0]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _crop_around_tumour(cohort: Path, size_xyz=CROP_XYZ) -> None:
    """Crop every CT and label to ``size_xyz`` voxels around the label's centre (same index box, so the label
    stays on the CT grid; SimpleITK keeps the physical position). PET is left as is: the converter resamples
    it onto the cropped CT grid."""
    import numpy as np
    import SimpleITK as sitk

    for ct_path in sorted(cohort.glob("*/*__CT.nii.gz")):
        pid = ct_path.name[: -len("__CT.nii.gz")]
        lab_path = ct_path.with_name(f"{pid}.nii.gz")
        ct = sitk.ReadImage(str(ct_path))
        ref = sitk.ReadImage(str(lab_path)) if lab_path.exists() else None
        centre = np.array(ct.GetSize()) // 2
        if ref is not None and sitk.GetArrayViewFromImage(ref).any():
            centre = np.argwhere(sitk.GetArrayViewFromImage(ref) > 0).mean(0)[::-1].round().astype(int)
        lo = [int(min(max(c - s // 2, 0), n - s)) for c, s, n in zip(centre, size_xyz, ct.GetSize())]
        box = tuple(slice(a, a + s) for a, s in zip(lo, size_xyz))
        sitk.WriteImage(ct[box], str(ct_path))
        if ref is not None:
            sitk.WriteImage(ref[box], str(lab_path))


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    from hnc_core.synth import generate_cohort

    root = tmp_path_factory.mktemp("e2e")
    env = _env(root)
    cohort = root / "cohort"
    generate_cohort(cohort, n=6, seed=3, size="small", progress=False)
    _crop_around_tumour(cohort)
    unlabelled = sorted(p for p in cohort.iterdir() if p.is_dir())[-1]
    (unlabelled / f"{unlabelled.name}.nii.gz").unlink()  # -> imagesTs
    out = {"root": root, "env": env, "test_id": unlabelled.name}
    out["convert"] = _run([str(BIN / "hnc-petct"), "nnunet-convert", str(cohort), "--dataset-id", "501"], env)
    _run([str(BIN / "nnUNetv2_plan_and_preprocess"), "-d", "501", "-c", "3d_fullres", "-np", "1"], env)
    pre = root / "pre" / "Dataset501_HECKTOR"
    # tiny 3-stage network at a 16x32x32 patch; source spacing kept, so the preprocessed data is reused
    out["cpu_plans"] = _run([sys.executable, "-m", "nnunet_plugins.cpu_plans", str(pre / "nnUNetPlans.json"),
                             str(pre / f"{PLANS}.json"), "--patch", "16", "32", "32", "--features", "8", "16", "32",
                             "--min-spacing", "0"], env)
    out["train"] = _run([str(BIN / "nnUNetv2_train"), "501", "3d_fullres", "0", "-tr", TRAINER, "-p", PLANS,
                         "-device", "cpu"], {**env, "nnUNet_n_proc_DA": "0"})
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
                           "-c", "3d_fullres", "-f", "0", "-tr", TRAINER, "-p", PLANS, "-device", "cpu", "-npp", "1", "-nps", "1",
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
