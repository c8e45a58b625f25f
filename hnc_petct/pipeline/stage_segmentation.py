"""Stage 2: HecMamba segmentation through the real nnU-Net v2 CLI.

convert (hnc-petct nnunet-convert) -> nnUNetv2_plan_and_preprocess -> [CPU budget: derived plans]
-> nnUNetv2_train -tr HecMamba... -> nnUNetv2_predict (held-out fold + unlabelled cases) ->
seg-evaluate on the fold's held-out validation cases -> overlay PNGs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hnc_petct.pipeline.context import StageContext, StageError, venv_script
from hnc_petct.pipeline.fingerprint import StageInputs

DATASET_ID = 501
DATASET = f"Dataset{DATASET_ID}_HECKTOR"
CPU_PLANS = "nnUNetPlans_cpu"
TRAINERS = {"cpu": "HecMambaTrainer_cpu", "full": "HecMambaTrainer"}
N_OVERLAYS = 4


def inputs(options) -> StageInputs:
    """Schedule, trainer, fold; ``dm_masks`` decides whether the labelled cases are predicted too."""
    return StageInputs(options=("seg_schedule", "seg_fold", "seg_trainer", "dm_masks"), upstream=("validate",))


def _env(seg: Path, device: str) -> dict:
    return {"nnUNet_raw": str(seg / "nnUNet_raw"), "nnUNet_preprocessed": str(seg / "nnUNet_preprocessed"),
            "nnUNet_results": str(seg / "nnUNet_results"), "nnUNet_compile": "f",
            "nnUNet_def_n_proc": "1" if device == "cpu" else "4", "PYTHONWARNINGS": "ignore"}


def _train_env(env: dict, device: str) -> dict:
    # augmentation in the main process on CPU; only for training (the planner crashes with 0)
    return {**env, "nnUNet_n_proc_DA": "0"} if device == "cpu" else env


def run(ctx: StageContext) -> dict:
    from nnunet_plugins.cpu_plans import write_cpu_plans
    from nnunet_plugins.pipeline import convert_cohort, evaluate_folder

    opt = ctx.options
    seg = ctx.stage_dir("segmentation")
    env = _env(seg, opt.device)
    raw = convert_cohort(ctx.cohort_dir, DATASET_ID, seg / "nnUNet_raw")
    ctx.state.add_command("segmentation", ["hnc-petct", "nnunet-convert", str(ctx.cohort_dir),
                                           "--dataset-id", str(DATASET_ID), "--nnunet-raw", str(seg / "nnUNet_raw")])
    n_train = json.loads((raw / "dataset.json").read_text())["numTraining"]
    if n_train < 5:
        raise StageError(f"only {n_train} labelled patients: nnU-Net's 5-fold split needs at least 5")
    plans, trainer = "nnUNetPlans", opt.seg_trainer or TRAINERS[opt.seg_schedule]
    cpu = opt.seg_schedule == "cpu"
    # CPU budget: plan only (--no_pp), derive the CPU plans, preprocess those alone.
    ctx.run("segmentation", [venv_script("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
                             "-np", str(opt.workers), "--verify_dataset_integrity", *(["--no_pp"] if cpu else [])], env)
    if cpu:
        pre = seg / "nnUNet_preprocessed" / DATASET
        write_cpu_plans(pre / "nnUNetPlans.json", pre / f"{CPU_PLANS}.json")
        ctx.state.add_command("segmentation", ["python", "-m", "nnunet_plugins.cpu_plans", str(pre / "nnUNetPlans.json"),
                                               str(pre / f"{CPU_PLANS}.json")])
        ctx.run("segmentation", [venv_script("nnUNetv2_preprocess"), "-d", str(DATASET_ID), "-plans_name", CPU_PLANS,
                                 "-c", "3d_fullres", "-np", str(opt.workers)], env)
        plans = CPU_PLANS
    fold_dir = (seg / "nnUNet_results" / DATASET / f"{trainer}__{plans}__3d_fullres" / f"fold_{opt.seg_fold}")
    # an interrupted/failed training with the same inputs continues from nnU-Net's own checkpoint (--c)
    resume = ctx.resuming() and any((fold_dir / f).is_file() for f in ("checkpoint_latest.pth", "checkpoint_final.pth"))
    ctx.run("segmentation", [venv_script("nnUNetv2_train"), str(DATASET_ID), "3d_fullres", str(opt.seg_fold),
                             "-tr", trainer, "-p", plans, "-device", opt.device, *(["--c"] if resume else [])],
            _train_env(env, opt.device))
    val_pred = fold_dir / "validation"
    if not any(val_pred.glob("*.nii.gz")):
        raise StageError(f"nnU-Net wrote no validation predictions in {val_pred}")
    pred_all = _predict_all(ctx, raw, seg, env, trainer, plans)
    summary = evaluate_folder(val_pred, raw / "labelsTr", seg / "evaluation")
    overlays = _overlays(ctx, val_pred, seg)
    return {
        "dataset": DATASET, "trainer": trainer, "plans": plans, "fold": opt.seg_fold,
        "setting": f"{opt.seg_schedule} schedule, plans {plans}",
        "n_train": n_train - len(list(val_pred.glob('*.nii.gz'))), "n_eval": summary["n_cases"],
        "per_class": [{"class": k, "mean DSC": v["mean_dsc"], "mean HD95 (mm)": v["mean_hd95_mm"],
                       "mean Surface Dice": v["mean_surface_dice"], "cases": v["n_cases"]}
                      for k, v in summary["per_class"].items()],
        "hecktor": {"GTVp mean DSC": summary["per_class"]["GTVp"]["mean_dsc"],
                    "GTVn aggregated DSC": summary["hecktor_aggregated_dsc_gtvn"],
                    "GTVn detection F1 (IoU>0.3)": summary["gtvn_detection"]["f1"]},
        "summary_json": str(seg / "evaluation" / "summary.json"),
        "validation_predictions": str(val_pred), "predictions_dir": str(pred_all) if pred_all else None,
        "overlays": overlays,
    }


def _predict_all(ctx: StageContext, raw: Path, seg: Path, env: dict, trainer: str, plans: str) -> Path | None:
    """Predict the unlabelled cases (imagesTs) and, for ``--dm-masks predicted``, the labelled ones too,
    into one folder of <PatientID>.nii.gz. Labelled cases are in-sample for the model: the metrics use
    only the fold's held-out validation cases. Returns None when there is nothing to predict."""
    subs = ["imagesTs"] + (["imagesTr"] if ctx.options.dm_masks == "predicted" else [])
    inp = seg / "predict_input"
    inp.mkdir(exist_ok=True)
    for sub in subs:
        for f in sorted((raw / sub).glob("*.nii.gz")) if (raw / sub).is_dir() else []:
            dst = inp / f.name
            if not dst.exists():
                try:
                    dst.symlink_to(f.resolve())
                except OSError:
                    shutil.copyfile(f, dst)
    if not any(inp.iterdir()):
        return None
    out = seg / "predictions"
    ctx.run("segmentation", [venv_script("nnUNetv2_predict"), "-i", str(inp), "-o", str(out), "-d", str(DATASET_ID),
                             "-c", "3d_fullres", "-f", str(ctx.options.seg_fold), "-tr", trainer, "-p", plans,
                             "-device", ctx.options.device, "-npp", "1", "-nps", "1", "--disable_tta"], env)
    return out


def _overlays(ctx: StageContext, val_pred: Path, seg: Path) -> list[str]:
    from hnc_core.identity import read_cohort
    from hnc_petct.pipeline.figures import overlay_png

    cohort = read_cohort(ctx.cohort_dir, check_images=False)
    pngs = []
    for pred in sorted(val_pred.glob("*.nii.gz"))[:N_OVERLAYS]:
        pid = pred.name[: -len(".nii.gz")]
        rec = cohort.patients.get(pid)
        if rec is None or rec.ct is None:
            continue
        png = seg / "overlays" / f"{pid}.png"
        overlay_png(rec.ct, rec.pet, rec.label, pred, png, title=pid)
        pngs.append(str(png.relative_to(ctx.out_dir)))
    return pngs
