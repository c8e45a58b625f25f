"""Evaluate the RFS ensemble on a cohort with outcomes: C-index (+ bootstrap CI), Uno's C, IBS, KM plot."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from hnc_core import schema
from hnc_core.failures import failure
from hnc_core.io import write_json_atomic
from survival_head.evaluation.survival_metrics import harrell_c, harrell_c_ci, integrated_brier, uno_c

log = logging.getLogger(__name__)


class TrainingOverlapWarning(UserWarning):
    """Evaluated patients were also training patients of the model: the metrics are optimistic."""


def split_by_outcome(data) -> tuple[list[str], list[dict]]:
    """IDs of ``data`` with a complete outcome (RFS days and relapse flag) and one failure record per other."""
    ok, missing = [], []
    for pid in data.ids:
        rec = data.cohort.patients[pid]
        if rec.rfs_days is None or rec.relapse is None:
            missing.append(failure(pid, data.cohort.clinical_csv or "clinical CSV",
                                   "no outcome (RFS / Relapse) for this patient: predicted, not evaluated"))
        else:
            ok.append(pid)
    return ok, missing


def training_overlap(ids: list[str], manifest: dict) -> list[str]:
    """Evaluated IDs that the model was trained on (its out-of-fold training list)."""
    trained = set(manifest.get("oof", {}).get("PatientID", []))
    return sorted(set(ids) & trained)


def _surv(event, time):
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event, bool), time=np.asarray(time, float))


def oracle_cindex(cohort_dir: str | Path, ids: list[str], y) -> float | None:
    """Harrell's C of the synthetic generator's true log-hazard (None for real cohorts)."""
    if not (Path(cohort_dir) / schema.GROUND_TRUTH_CSV_NAME).is_file():
        return None
    from hnc_core.synth import load_ground_truth

    truth = load_ground_truth(cohort_dir)
    return harrell_c(y, truth.loc[ids, "true_log_hazard"].to_numpy())


def survival_report(y, risk, y_ref, risk_ref, n_boot: int = 1000, seed: int = 0) -> dict:
    """Harrell (CI), Uno and IBS of ``risk`` on ``y``; ``(y_ref, risk_ref)`` = training reference
    (censoring distribution for Uno/IBS, Breslow calibration for IBS)."""
    return {"n": int(len(y)), "n_events": int(np.sum(y["event"])),
            "harrell_c": harrell_c_ci(y, risk, n_boot=n_boot, seed=seed),
            "uno_c": uno_c(y_ref, y, risk), **integrated_brier(y_ref, y, risk_ref, risk)}


def evaluate(cohort_dir: str | Path, models_dir: str | Path, out_dir: str | Path, n_boot: int = 1000,
             batch_size: int = 8, device: str = "cpu", cache_dir: str | Path | None = None,
             progress: bool = True) -> dict:
    """Predict, then write ``out_dir/metrics.json`` and ``out_dir/km_plot.png``; return the metrics.

    Reference for Uno's C / IBS and the KM split: the training patients' out-of-fold risks (the KM
    threshold is their median, fixed before seeing the evaluated cohort).
    """
    from survival_head.rfs.plots import km_plot
    from survival_head.rfs.workflows import predict

    out_dir = Path(out_dir)
    res = predict(cohort_dir, models_dir, out_dir, batch_size, device, cache_dir, progress)
    data, manifest = res["data"], res["manifest"]
    oof = manifest["oof"]
    y_ref, r_ref = _surv(oof["event"], oof["time"]), np.asarray(oof["risk"], float)
    ids, no_outcome = split_by_outcome(data)
    for f in no_outcome:
        log.warning("patient %s: %s", f["PatientID"], f["error"])
    overlap = training_overlap(ids, manifest)
    if overlap:
        msg = (f"{len(overlap)} of {len(ids)} evaluated patients were training patients of this model "
               f"(e.g. {', '.join(overlap[:5])}): the metrics are optimistic; evaluate on held-out patients")
        warnings.warn(msg, TrainingOverlapWarning, stacklevel=2)
        log.warning(msg)
    keep = np.isin(np.asarray(data.ids), ids)
    risk = np.asarray(res["risk"], float)[keep] if len(data.ids) else np.zeros(0)
    y = data.outcome(ids)
    metrics = {"image_size": manifest["image_size"], "mode": manifest["mode"],
               "train_config": manifest["train_config"], "failures": res["failures"] + no_outcome,
               "training_overlap": {"n": len(overlap), "n_evaluated": len(ids), "ids": overlap},
               **survival_report(y, risk, y_ref, r_ref, n_boot)}
    metrics["oracle_c"] = oracle_cindex(cohort_dir, ids, y)
    metrics["km"] = km_plot(y, risk, out_dir / "km_plot.png", thresholds=[float(np.median(r_ref))])
    metrics["fold_weights"] = manifest["ensemble"]["weights"]
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics
