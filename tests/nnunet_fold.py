"""One tiny trained HecMamba nnU-Net fold per test session, through the real CLIs (used by test_nnunet_e2e,
the segmentation-bundle tests and the clinic app's end-to-end test): convert -> plan/preprocess -> CPU plans
-> ``nnUNetv2_train`` (``HecMambaTrainer_2epochs_10iters``, ``-device cpu``, 16x32x32 patches) -> predict ->
seg-evaluate. The synthetic volumes are cropped to 64x64x32 voxels around the tumour and nnU-Net uses one
process (nnUNet_def_n_proc=1), so it runs in a few minutes on 2 shared cores."""

from __future__ import annotations

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


def crop_around_tumour(cohort: Path, size_xyz=CROP_XYZ) -> None:
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
def nnunet_pipeline(tmp_path_factory):
    from hnc_core.synth import generate_cohort

    root = tmp_path_factory.mktemp("e2e")
    env = _env(root)
    cohort = root / "cohort"
    generate_cohort(cohort, n=6, seed=3, size="small", progress=False)
    crop_around_tumour(cohort)
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
    out["fold_dir"] = root / "res" / "Dataset501_HECKTOR" / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_0"
    out["images"], out["pred"] = inp, root / "pred"
    return out


