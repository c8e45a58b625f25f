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
from survival_head.dm.analysis import ALL_SETS, DEFAULT_SUBGROUPS, write_analysis
from survival_head.dm.data import DMData, load_for_config
from survival_head.dm.metrics import binary_metrics, fold_threshold_metrics, plot_roc, youden_threshold
from survival_head.dm.training import MODALITIES, FittedDM, cross_validate, fit_fold, make_config

log = logging.getLogger(__name__)
PROB_COL, CLASS_COL = "dm_probability", "dm_predicted"


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
    analysis_dir: str | Path | None = None,
    subgroups=DEFAULT_SUBGROUPS,
    **config,
) -> dict:
    """5-fold CV (OOF metrics, ROC) then a final model on all patients saved to ``model_dir``.

    ``analysis_dir``: the same cross-validation also fits every modality subset (they share each fold's
    selector, encoder and image branch, and each head is seeded alike, so the trained set's OOF predictions
    are unchanged) and writes the modality ablation + subgroup analysis there
    (:func:`survival_head.dm.analysis.write_analysis`): one CV for both.

    ``config`` overrides :class:`DMConfig` fields (``image_size``, ``max_epochs``, ``backbone`` ...).
    ``organ_mask_dirs`` ``{name: folder of <PatientID>.nii.gz}`` adds organ masks as image channels.
    The saved threshold is Youden's on the CV out-of-fold predictions. Returns the metrics dict.
    """
    from survival_head.radiomics.extract import load_params

    cfg = make_config(**config)
    out = Path(output_dir)
    model_dir = Path(model_dir) if model_dir else out / "models"
    params = radiomics_params if isinstance(radiomics_params, dict) else load_params(radiomics_params)
    data = load_for_config(dataset_dir, radiomics_cache, cfg, mask_dir, params, workers, scheduler, True, progress,
                           organ_mask_dirs)
    if data.y.sum() < cfg.n_folds or (len(data.y) - data.y.sum()) < cfg.n_folds:
        raise ValueError(f"need >= {cfg.n_folds} patients of each class for {cfg.n_folds}-fold CV, got "
                         f"{int(data.y.sum())} DM / {int(len(data.y) - data.y.sum())} no DM")
    mods = tuple(modalities)
    sets = [mods] + ([tuple(m) for m in ALL_SETS if tuple(m) != mods] if analysis_dir else [])
    cv = cross_validate(data, cfg, sets, progress, device)
    if analysis_dir:
        write_analysis(dataset_dir, data, cv, cfg, analysis_dir, subgroups)
    name = "+".join(mods)
    p = cv["oof"][name]
    cv_metrics = binary_metrics(data.y, p, pred_class=cv["pred_class"][name])  # ACC/SEN/SPE at fold Youden
    cv_metrics.update(fold_threshold_metrics(data.y, cv["pred_class"][name]))
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
    allow_missing_clinical: bool = False,
) -> pd.DataFrame:
    """Write ``predictions.csv`` / ``.json``: PatientID, DM probability, class at the saved threshold.

    ``organ_mask_dirs`` must name the same organs the model was trained with (``model_meta.json``).
    Patients failing the cohort checks, or without clinical data when the model uses it (unless
    ``allow_missing_clinical``), are listed in ``failures.json`` with file and reason. An earlier
    ``predictions.json`` holding a patient who fails now is kept (the new set goes to
    ``predictions.partial.*``); no predictable patient raises :class:`~hnc_core.guards.NothingPredicted`.
    """
    from hnc_core.guards import NothingPredicted, check_output_dir, prediction_suffix
    from hnc_core.identity import read_cohort

    out = check_output_dir(output_dir, protected_dirs=[dataset_dir])
    fitted = FittedDM.load(model_dir, sha256)
    need = fitted.info.get("organ_names", [])
    if sorted(organ_mask_dirs or {}) != need:
        raise ValueError(f"model {model_dir} was trained with organ masks {need}; got {sorted(organ_mask_dirs or {})}")
    try:
        data = load_for_config(dataset_dir, radiomics_cache, fitted.config, mask_dir,
                               fitted.info.get("radiomics_params"), workers, scheduler, labelled_only, progress, organ_mask_dirs)
    except ValueError as exc:  # load_dm_data: no usable patient at all
        failures = read_cohort(dataset_dir, check_images=True).exclusions("images")
        write_json_atomic(out / "failures.json", failures)
        raise NothingPredicted(f"no patient of {dataset_dir} could be predicted: {exc}") from None
    warnings = {}
    if "clinical" in fitted.modalities:
        data, warnings = _clinical_gate(data, dataset_dir, allow_missing_clinical)
    failures = list(data.failures)
    write_json_atomic(out / "failures.json", failures)
    if not data.ids:
        raise NothingPredicted(f"no patient of {dataset_dir} could be predicted ({len(failures)} rejected, listed "
                               f"in {out / 'failures.json'})")
    p = fitted.predict_proba(data)
    df = pd.DataFrame({schema.PATIENT_ID: data.ids, PROB_COL: p, CLASS_COL: (p >= fitted.threshold).astype(int)})
    if warnings:
        df["warning"] = [warnings.get(i, "") for i in data.ids]
    suffix = prediction_suffix(out, [f["PatientID"] for f in failures])
    if suffix:
        log.error("%s holds earlier predictions for patients that fail now; keeping it and writing this run's "
                  "%d predictions to predictions%s.*", out / "predictions.json", len(data.ids), suffix)
    write_csv_atomic(df, out / f"predictions{suffix}.csv")
    write_json_atomic(out / f"predictions{suffix}.json", {
        "threshold": fitted.threshold, "modalities": list(fitted.modalities), "image_size": fitted.config.image_size,
        "predictions": df.to_dict(orient="records"), "errors": data.errors, "failures": failures})
    df.attrs["data"], df.attrs["threshold"] = data, fitted.threshold
    return df


def _clinical_gate(data: DMData, dataset_dir, allow_missing: bool) -> tuple[DMData, dict]:
    """Drop (into ``data.failures``) or flag patients without a clinical row; the model uses one."""
    from hnc_core.guards import clinical_gate
    from hnc_core.identity import read_cohort

    kept, warnings, refused = clinical_gate(read_cohort(dataset_dir, check_images=False), data.ids, allow_missing,
                                            "DM model")
    data.failures.extend(refused)
    if not kept:
        data.ids = []
    elif len(kept) < len(data.ids):
        failures, keep = data.failures, set(kept)
        data = data.subset([i for i, pid in enumerate(data.ids) if pid in keep])
        data.failures = failures
    return data, warnings


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
        from hnc_core.guards import bundle_entry
        from survival_head.io.checkpoints import WeightsError

        return bundle_entry(type(self).fn, (WeightsError,))(**self.kwargs)


class TrainWorkflow(_Runner):
    fn = staticmethod(train)


class InferenceWorkflow(_Runner):
    fn = staticmethod(predict)


class EvaluateWorkflow(_Runner):
    fn = staticmethod(evaluate)

