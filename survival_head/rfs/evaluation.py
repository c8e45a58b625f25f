"""Evaluate the RFS ensemble on a cohort with outcomes: C-index (+ bootstrap CI), Uno's C, IBS, KM plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hnc_core import schema
from hnc_core.io import write_json_atomic
from survival_head.evaluation.survival_metrics import harrell_c, harrell_c_ci, integrated_brier, uno_c


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
    y = data.outcome()
    metrics = {"image_size": manifest["image_size"], "mode": manifest["mode"],
               "train_config": manifest["train_config"], "failures": res["failures"],
               **survival_report(y, res["risk"], y_ref, r_ref, n_boot)}
    metrics["oracle_c"] = oracle_cindex(cohort_dir, data.ids, y)
    metrics["km"] = km_plot(y, res["risk"], out_dir / "km_plot.png", thresholds=[float(np.median(r_ref))])
    metrics["fold_weights"] = manifest["ensemble"]["weights"]
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics
