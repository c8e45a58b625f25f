"""Stage 3: RFS fusion bundle — train the folds, ablations (clinical / imaging / fusion), inference.

The fusion row of the ablation is the bundle's own out-of-fold result (same folds, same settings), so
the bundle is trained once; clinical-only and imaging-only are trained by the ablation runner.
"""

from __future__ import annotations

import json

import numpy as np

from hnc_petct.pipeline.bundles import bundle_run
from hnc_petct.pipeline.context import StageContext, StageError
from hnc_petct.pipeline.fingerprint import StageInputs

BUNDLE = "hecktor_rfs_fusion"


def inputs(options) -> StageInputs:
    return StageInputs(options=("rfs_image_size", "rfs_max_epochs", "rfs_learning_rate", "n_folds",
                                "freeze_backbone", "n_boot"), upstream=("validate",))


def _row(model: str, rep: dict) -> dict:
    h = rep["harrell_c"]
    return {"model": model, "C-index": h["estimate"], "95% CI low": h["ci_low"], "95% CI high": h["ci_high"],
            "Uno C": rep.get("uno_c"), "IBS": rep.get("ibs"), "patients": rep.get("n"), "events": rep.get("n_events")}


def run(ctx: StageContext) -> dict:
    from survival_head.rfs.ablation import run_ablations
    from survival_head.rfs.evaluation import _surv, oracle_cindex, survival_report
    from survival_head.rfs.plots import km_plot
    from survival_head.rfs.workflows import load_manifest

    opt = ctx.options
    d = ctx.stage_dir("rfs")
    models, cache = d / "models", d / "cache"
    common = {"dataset_dir": ctx.cohort_dir, "cache_dir": cache, "image_size": opt.rfs_image_size,
              "device": opt.device}
    ctx.run("rfs", bundle_run(BUNDLE, "train", **common, models_dir=models, max_epochs=opt.rfs_max_epochs,
                              n_folds=opt.n_folds, freeze_backbone=opt.freeze_backbone,
                              learning_rate=opt.rfs_learning_rate, progress=False))
    man = load_manifest(models)
    oof = man["oof"]
    y, risk = _surv(oof["event"], oof["time"]), np.asarray(oof["risk"], float)
    fusion = survival_report(y, risk, y, risk, n_boot=opt.n_boot)

    abl = run_ablations(ctx.cohort_dir, d / "ablation", image_size=opt.rfs_image_size,
                        max_epochs=opt.rfs_max_epochs, n_folds=opt.n_folds, modes=("clinical", "image"),
                        holdout_fraction=0.0, freeze_backbone=opt.freeze_backbone, n_boot=opt.n_boot,
                        lr=opt.rfs_learning_rate, device=opt.device, cache_dir=cache, progress=False)
    rows = [_row(f"{m}-only", abl["modes"][m]["oof"]) for m in ("clinical", "image")] + [_row("fusion", fusion)]
    km = km_plot(y, risk, d / "km_oof.png", title="RFS by out-of-fold predicted risk (median split)")

    ctx.run("rfs", bundle_run(BUNDLE, "inference", **common, models_dir=models, output_dir=d / "inference",
                              progress=False))
    preds = json.loads((d / "inference" / "predictions.json").read_text())
    if not preds:
        raise StageError(f"RFS inference wrote no predictions in {d / 'inference'}")
    oracle = oracle_cindex(ctx.cohort_dir, oof["PatientID"], y)  # None for real cohorts
    return {
        "setting": (f"{opt.n_folds}-fold out-of-fold C-index; crops {opt.rfs_image_size}³, {opt.rfs_max_epochs} epochs, "
                    f"backbone {'frozen' if opt.freeze_backbone else 'trained'}, clinical set {man.get('clinical_set')}"),
        "ablation": rows, "oracle_c_index": oracle, "km_png": str((d / "km_oof.png").relative_to(ctx.out_dir)),
        "logrank_p": km.get("p_value"), "n_patients": int(len(risk)), "failures": man.get("failures", []),
        "predictions_json": str(d / "inference" / "predictions.json"), "n_predictions": len(preds),
        "ablation_json": str(d / "ablation" / "ablation.json"),
    }

