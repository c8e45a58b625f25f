"""Pieces the DM bundle's standard MONAI workflow (``inference.json`` / ``evaluate.json``) wires together.

* :class:`DMDatalist` - cohort folder + trained model -> items ``{"id", "image": [ct, mask], "radiomics": row,
  "clinical": row[, "label"]}`` (radiomics extracted with pyradiomics through the per-patient cache) and
  failure records;
* :func:`trained_meta` - the trained ``model_meta.json`` (selected features, radiomics parameters, crop settings);
* :class:`DMPredictionWriter` / :class:`DMMetricsWriter` - evaluator handlers writing ``predictions.csv`` /
  ``predictions.json`` (and ``metrics.json`` + ``roc.png``) atomically when the run completes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hnc_core.failures import by_patient, log_failures
from survival_head.io.prediction_writer import PredictionWriter

log = logging.getLogger(__name__)

PROB_COL, CLASS_COL = "dm_probability", "dm_predicted"


def trained_meta(model_dir: str | Path) -> dict:
    """``model_dir/model_meta.json`` (``WeightsError`` when the model was never trained)."""
    from survival_head.io.checkpoints import WeightsError

    path = Path(model_dir) / "model_meta.json"
    if not path.is_file():
        raise WeightsError(f"model metadata not found: {path} (train the bundle first)")
    return json.loads(path.read_text())


class DMDatalist:
    """Datalist of a cohort for the trained DM model in ``model_dir``: ``items`` and ``failures``.

    ``labelled_only``: keep patients with a ``DistantMetastasis`` label (evaluation; items carry ``label``).
    ``organ_mask_dirs`` is not supported by the standard workflow (an error, never ignored).
    """

    def __init__(self, dataset_dir: str | Path, model_dir: str | Path, mask_dir: str | Path | None = None,
                 radiomics_cache: str | Path | None = None, workers: int = 1, scheduler: str | None = None,
                 progress: bool = True, labelled_only: bool = False, organ_mask_dirs: dict | None = None,
                 allow_missing_clinical: bool = False):
        from hnc_core import schema
        from hnc_core.guards import clinical_gate
        from hnc_core.identity import read_cohort
        from survival_head.dm.data import candidate_ids, tumour_masks
        from survival_head.radiomics.cohort import extract_cohort

        meta = trained_meta(model_dir)
        if organ_mask_dirs or meta.get("info", {}).get("organ_names"):
            raise ValueError("organ-mask channels are not supported by the bundle's standard workflow yet: use "
                             "survival_head.dm.workflows.predict")
        cfg = meta["config"]
        cohort = read_cohort(dataset_dir, check_images=True)  # the same voxel checks as `hnc-petct validate`
        ids, checked = candidate_ids(cohort, labelled_only, mask_dir)
        self.warnings: dict[str, str] = {}
        if "clinical" in meta.get("modalities", ()):
            ids, self.warnings, refused = clinical_gate(cohort, ids, allow_missing_clinical, "DM model")
            checked += refused
        masks = tumour_masks(cohort, ids, mask_dir, checked)
        ids = [i for i in ids if i in masks]
        rad = extract_cohort(dataset_dir, radiomics_cache or Path(dataset_dir) / ".dm_radiomics_cache", workers,
                             scheduler, mask_dir, params=meta.get("info", {}).get("radiomics_params"),
                             include_nodes=cfg["include_nodes"], ring_mm=cfg["ring_mm"], ids=ids,
                             progress=progress) if ids else pd.DataFrame()
        checked += rad.attrs.get("failures", [])
        self.cohort, self.items = cohort, []
        for pid in ids:
            if pid not in rad.index:
                continue
            row = cohort.clinical.loc[pid].to_dict() if pid in cohort.clinical.index else None
            item = {"id": pid, "image": [str(cohort.patients[pid].ct), str(masks[pid])],
                    "radiomics": rad.loc[pid].to_dict(), "clinical": row}
            if labelled_only:
                item["label"] = float(cohort.clinical.loc[pid, schema.DM])
            self.items.append(item)
        self.failures = checked
        log_failures(self.failures, log)


class DMPredictionWriter(PredictionWriter):
    """Ignite handler: collect ``(id, P(DM))``; at completion write ``predictions.csv`` (PatientID,
    dm_probability, dm_predicted at the saved threshold) and ``predictions.json`` (with the errors)."""

    def __init__(self, output_dir: str | Path, model_dir: str | Path, failures: list[dict] | None = None,
                 warnings: dict[str, str] | None = None, protected_dirs: list | tuple = ()):
        super().__init__(output_dir, failures, warnings, protected_dirs)
        self.meta = trained_meta(model_dir)
        self.threshold = float(self.meta["threshold"])
        self.labels: list[float] = []

    def reset(self) -> None:
        super().reset()
        self.labels.clear()

    def collect(self, engine) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):  # decollated, one per patient
            p = float(torch.as_tensor(out["pred"]).reshape(-1)[0])
            self.rows.append({"PatientID": str(item["id"]), PROB_COL: p, CLASS_COL: int(p >= self.threshold)})
            if "label" in item:
                self.labels.append(float(torch.as_tensor(item["label"]).reshape(-1)[0]))

    def write(self, engine=None) -> pd.DataFrame:
        from hnc_core.io import write_csv_atomic, write_json_atomic

        df = pd.DataFrame(self.rows, columns=["PatientID", PROB_COL, CLASS_COL])
        if self.warnings:
            df["warning"] = [self.warnings.get(i, "") for i in df["PatientID"]]
        errors = by_patient(self.failures)
        suffix = self.begin_write(len(df))
        write_csv_atomic(df, self.output_dir / f"predictions{suffix}.csv")
        write_json_atomic(self.output_dir / f"predictions{suffix}.json", {
            "threshold": self.threshold, "modalities": list(self.meta["modalities"]),
            "image_size": self.meta["config"]["image_size"], "predictions": df.to_dict(orient="records"),
            "errors": errors, "failures": self.failures})
        return df


class DMMetricsWriter(DMPredictionWriter):
    """:class:`DMPredictionWriter` that also writes ``metrics.json`` (AUC with bootstrap CI, accuracy,
    sensitivity, specificity at the saved threshold) and ``roc.png``; items need ``label``."""

    def write(self, engine=None) -> pd.DataFrame:
        from hnc_core.io import write_json_atomic
        from survival_head.dm.metrics import binary_metrics, plot_roc

        df = super().write(engine)
        y, p = np.asarray(self.labels, int), df[PROB_COL].to_numpy()
        m = binary_metrics(y, p, self.threshold)
        plot_roc({"test": (y, p)}, self.output_dir / "roc.png", "DM evaluation")
        m["errors"] = by_patient(self.failures)
        write_json_atomic(self.output_dir / "metrics.json", m)
        return df
