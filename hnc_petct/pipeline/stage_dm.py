"""Stage 4: distant-metastasis bundle — radiomics (cached), train, ablations + subgroups, inference.

Tumour masks come from the labels, or with ``--dm-masks predicted`` from the segmentation stage's
HecMamba predictions (``segmentation/predictions/<PatientID>.nii.gz``).
"""

from __future__ import annotations

import json
from pathlib import Path

from hnc_petct.pipeline.bundles import bundle_run
from hnc_petct.pipeline.context import StageContext, StageError
from hnc_petct.pipeline.fingerprint import StageInputs

BUNDLE = "hnscc_distant_metastasis"


def inputs(options) -> StageInputs:
    """With ``--dm-masks predicted`` the segmentation stage's predictions are an input too."""
    upstream = ("validate", "segmentation") if options.dm_masks == "predicted" else ("validate",)
    return StageInputs(options=("dm_masks", "dm_image_size", "dm_max_epochs", "dm_window_size",
                                "radiomics_params", "n_folds"), upstream=upstream)


def _mask_dir(ctx: StageContext) -> Path | None:
    if ctx.options.dm_masks == "label":
        return None
    seg = ctx.outputs.get("segmentation")
    if not seg or not seg.get("predictions_dir") or not Path(seg["predictions_dir"]).is_dir():
        raise StageError("--dm-masks predicted needs a finished segmentation stage with predictions")
    return Path(seg["predictions_dir"])


def _ablation_rows(ablation: dict) -> list[dict]:
    rows = []
    for name, m in ablation.items():
        thr = m.get("cv_fold_threshold", {})
        rows.append({"modalities": name, "AUC": m["auc"], "95% CI low": m["auc_ci95"][0],
                     "95% CI high": m["auc_ci95"][1], "ACC": thr.get("accuracy"), "SEN": thr.get("sensitivity"),
                     "SPE": thr.get("specificity"), "patients": m["n"], "DM+": m["n_positive"]})
    return rows


def _subgroup_rows(subgroups: dict) -> list[dict]:
    return [{"variable": col, "level": level, "patients": m["n"], "DM+": m["n_positive"], "AUC": m["auc"],
             "95% CI low": m["auc_ci95"][0], "95% CI high": m["auc_ci95"][1]}
            for col, levels in subgroups.items() for level, m in levels.items()]


def run(ctx: StageContext) -> dict:
    opt = ctx.options
    d = ctx.stage_dir("dm")
    mask_dir = _mask_dir(ctx)
    common = {"dataset_dir": ctx.cohort_dir, "mask_dir": mask_dir, "radiomics_cache": d / "radiomics_cache",
              "workers": opt.workers, "progress": False, "device": opt.device}
    sizes = {"image_size": opt.dm_image_size, "max_epochs": opt.dm_max_epochs, "n_folds": opt.n_folds,
             "window_size": opt.dm_window_size}
    # one cross-validation: the bundle's training CV also fits the modality subsets and writes the analysis
    ctx.run("dm", bundle_run(BUNDLE, "train", **common, **sizes, radiomics_params=opt.radiomics_params,
                             output_dir=d / "train", model_dir=d / "models",
                             **{"trainer#analysis_dir": d / "analysis"}))
    analysis_json = d / "analysis" / "analysis.json"
    if not analysis_json.is_file():
        raise StageError(f"DM training wrote no modality analysis ({analysis_json})")
    res = json.loads(analysis_json.read_text())
    ctx.run("dm", bundle_run(BUNDLE, "inference", **common, output_dir=d / "inference", model_dir=d / "models"))
    pred_json = d / "inference" / "predictions.json"
    if not pred_json.is_file() or not json.loads(pred_json.read_text()):
        raise StageError(f"DM inference wrote no predictions ({pred_json})")
    return {
        "setting": (f"{opt.n_folds}-fold cross-validation, CT crops {opt.dm_image_size}³, Swin window "
                    f"{opt.dm_window_size}, {opt.dm_max_epochs} image-branch epochs, "
                    f"masks from {'HecMamba predictions' if mask_dir else 'labels'}, {res['radiomics_features_per_patient']} "
                    f"radiomics features per patient before selection"),
        "ablation": _ablation_rows(res["ablation"]), "subgroups": _subgroup_rows(res["subgroups"]),
        "subgroup_model": res["subgroup_model"], "oracle_auc": res["oracle_auc"],
        "roc_png": str((d / "analysis" / "roc_ablation.png").relative_to(ctx.out_dir)),
        "n_patients": res["n_patients"], "errors": res["errors"], "predictions_json": str(pred_json),
        "analysis_json": str(d / "analysis" / "analysis.json"),
    }
