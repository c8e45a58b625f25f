"""DM workflows: train (CV + final model), predict, evaluate. Python API and bundle ``_target_`` entry points.

All outputs are written atomically. Radiomics come from a per-patient cache (``radiomics_cache``);
bad patients are reported in the outputs and the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hnc_core import schema
from hnc_core.io import write_csv_atomic, write_json_atomic
from survival_head.dm.data import DMData, load_dm_data
from survival_head.dm.metrics import binary_metrics, plot_roc, youden_threshold
from survival_head.dm.training import MODALITIES, DMConfig, FittedDM, cross_validate, fit_fold

log = logging.getLogger(__name__)
PROB_COL, CLASS_COL = "dm_probability", "dm_predicted"


def _load(cohort_dir, cache, cfg: DMConfig, mask_dir, radiomics_params, workers, scheduler, labels, progress,
          organ_mask_dirs=None) -> DMData:
    return load_dm_data(cohort_dir, cache or Path(cohort_dir) / ".dm_radiomics_cache", image_size=cfg.image_size,
                        fov_mm=cfg.fov_mm, mask_dir=mask_dir, include_nodes=cfg.include_nodes, ring_mm=cfg.ring_mm,
                        radiomics_params=radiomics_params, organ_mask_dirs=organ_mask_dirs, workers=workers,
                        scheduler=scheduler, require_labels=labels, progress=progress)


def make_config(**overrides) -> DMConfig:
    """DMConfig with keyword overrides (``None`` values ignored)."""
    return dataclasses.replace(DMConfig(), **{k: v for k, v in overrides.items() if v is not None})


def train(
    dataset_dir: str | Path,
    output_dir: str | Path,
    model_dir: str | Path | None = None,
    *,
    mask_dir: str | Path | None = None,
    radiomics_cache: str | Path | None = None,
    radiomics_params=None,
    workers: int = 1,
    scheduler: str | None = None,
    modalities=MODALITIES,
    progress: bool = True,
    device: str = "cpu",
    organ_mask_dirs: dict[str, str] | None = None,
    **config,
) -> dict:
    """5-fold CV (OOF metrics, ROC) then a final model on all patients saved to ``model_dir``.

    ``config`` overrides :class:`DMConfig` fields (``image_size``, ``max_epochs``, ``backbone`` ...).
    ``organ_mask_dirs`` ``{name: folder of <PatientID>.nii.gz}`` adds organ masks as image channels.
    The saved threshold is Youden's on the CV out-of-fold predictions. Returns the metrics dict.
    """
    from survival_head.radiomics.extract import load_params

    cfg = make_config(**config)
    out = Path(output_dir)
    model_dir = Path(model_dir) if model_dir else out / "models"
    params = radiomics_params if isinstance(radiomics_params, dict) else load_params(radiomics_params)
    data = _load(dataset_dir, radiomics_cache, cfg, mask_dir, params, workers, scheduler, True, progress,
                 organ_mask_dirs)
    if data.y.sum() < cfg.n_folds or (len(data.y) - data.y.sum()) < cfg.n_folds:
        raise ValueError(f"need >= {cfg.n_folds} patients of each class for {cfg.n_folds}-fold CV, got "
                         f"{int(data.y.sum())} DM / {int(len(data.y) - data.y.sum())} no DM")
    mods = tuple(modalities)
    cv = cross_validate(data, cfg, [mods], progress, device)
    name = "+".join(mods)
    p = cv["oof"][name]
    cv_metrics = binary_metrics(data.y, p, pred_class=cv["pred_class"][name])  # ACC/SEN/SPE at fold Youden
    cv_metrics.update(_fold_threshold_metrics(data.y, cv["pred_class"][name]))
    final = fit_fold(data, np.arange(len(data.ids)), cfg, [mods], progress, device)[0][name]
    final.threshold = youden_threshold(data.y, p)
    final.info.update({"organ_names": sorted(organ_mask_dirs or {}), "radiomics_params": params,
                       "n_train": len(data.ids), "cv_auc": cv_metrics["auc"]})
    meta = final.save(model_dir)
    write_csv_atomic(pd.DataFrame({schema.PATIENT_ID: data.ids, schema.DM: data.y, PROB_COL: p,
                                   CLASS_COL: cv["pred_class"][name]}), out / "cv_predictions.csv")
    plot_roc({f"CV {name}": (data.y, p)}, out / "roc_cv.png", f"DM 5-fold CV (image {cfg.image_size}^3)")
    result = {"config": dataclasses.asdict(cfg), "modalities": list(mods), "cv": cv_metrics,
              "threshold": final.threshold, "sha256": meta["sha256"], "model_dir": str(model_dir),
              "selected_features": final.selector.selected_, "errors": data.errors}
    write_json_atomic(out / "train_metrics.json", result)
    return result


def _fold_threshold_metrics(y, pred_class) -> dict:
    """Accuracy / sensitivity / specificity of the classes predicted at each fold's training-fold threshold."""
    y = np.asarray(y)
    return {"cv_fold_threshold": {
        "accuracy": float((pred_class == y).mean()),
        "sensitivity": float(pred_class[y == 1].mean()) if (y == 1).any() else float("nan"),
        "specificity": float(1 - pred_class[y == 0].mean()) if (y == 0).any() else float("nan")}}


def predict(
    dataset_dir: str | Path,
    output_dir: str | Path,
    model_dir: str | Path,
    *,
    mask_dir: str | Path | None = None,
    radiomics_cache: str | Path | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    labelled_only: bool = False,
    organ_mask_dirs: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Write ``predictions.csv`` / ``.json``: PatientID, DM probability, class at the saved threshold.

    ``organ_mask_dirs`` must name the same organs the model was trained with (``model_meta.json``).
    """
    fitted = FittedDM.load(model_dir, sha256)
    need = fitted.info.get("organ_names", [])
    if sorted(organ_mask_dirs or {}) != need:
        raise ValueError(f"model {model_dir} was trained with organ masks {need}; got {sorted(organ_mask_dirs or {})}")
    data = _load(dataset_dir, radiomics_cache, fitted.config, mask_dir, fitted.info.get("radiomics_params"),
                 workers, scheduler, labelled_only, progress, organ_mask_dirs)
    p = fitted.predict_proba(data)
    df = pd.DataFrame({schema.PATIENT_ID: data.ids, PROB_COL: p, CLASS_COL: (p >= fitted.threshold).astype(int)})
    out = Path(output_dir)
    write_csv_atomic(df, out / "predictions.csv")
    write_json_atomic(out / "predictions.json", {"threshold": fitted.threshold, "modalities": list(fitted.modalities),
                                                 "image_size": fitted.config.image_size,
                                                 "predictions": df.to_dict(orient="records"),
                                                 "errors": data.errors})
    df.attrs["data"], df.attrs["threshold"] = data, fitted.threshold
    return df


def evaluate(dataset_dir: str | Path, output_dir: str | Path, model_dir: str | Path, **kwargs) -> dict:
    """Predict on labelled patients, then AUC (bootstrap CI), accuracy, sensitivity, specificity, ROC PNG."""
    df = predict(dataset_dir, output_dir, model_dir, labelled_only=True, **kwargs)
    data: DMData = df.attrs["data"]
    m = binary_metrics(data.y, df[PROB_COL].to_numpy(), df.attrs["threshold"])
    plot_roc({"test": (data.y, df[PROB_COL].to_numpy())}, Path(output_dir) / "roc.png", "DM evaluation")
    m["errors"] = data.errors
    write_json_atomic(Path(output_dir) / "metrics.json", m)
    return m


class _Runner:
    """Bundle entry point: ``_target_`` builds it from config values, ``run()`` executes."""

    fn = None

    def __init__(self, **kwargs):
        self.kwargs = {k: v for k, v in kwargs.items() if v is not None or k == "mask_dir"}

    def run(self):
        return type(self).fn(**self.kwargs)


class TrainWorkflow(_Runner):
    fn = staticmethod(train)


class InferenceWorkflow(_Runner):
    fn = staticmethod(predict)


class EvaluateWorkflow(_Runner):
    fn = staticmethod(evaluate)


def run_analysis(cohort_dir: str | Path, out_dir: str | Path, **kwargs) -> dict:
    """Modality ablations + subgroup metrics; see :func:`survival_head.dm.analysis.run_analysis`."""
    from survival_head.dm.analysis import run_analysis as _run

    return _run(cohort_dir, out_dir, **kwargs)
