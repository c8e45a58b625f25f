"""Pieces the RFS bundle's standard MONAI workflow (``inference.json`` / ``evaluate.json``) wires together.

* :func:`cohort_datalist` - HECKTOR-layout folder -> items ``{"id", "image": [ct, pet], "clinical": row}``
  plus failure records of the patients that cannot be used;
* :class:`PreprocessedDataset` - runs the bundle's ``preprocessing`` once per patient; a patient whose files
  cannot be read becomes a failure record (naming patient and file) and the rest of the cohort goes on;
* :func:`load_network` - ``models/model.pt`` into ``network_def`` after a sha256 check, ``weights_only=True``;
* :class:`Task2RiskWriter` - evaluator handler writing ``predictions.json`` (HECKTOR Task-2),
  ``predictions.csv`` (with failed patients) and ``failures.json`` atomically when the run completes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hnc_core.failures import from_exception, log_failures
from survival_head.io.bundle_paths import guarded as _guarded
from survival_head.io.prediction_writer import PredictionWriter

log = logging.getLogger(__name__)


class CohortDatalist:
    """Datalist of a cohort folder: ``items`` (list of dicts) and ``failures`` (list of dicts).

    ``task="images"`` needs CT + PET (inference); ``"rfs"`` also needs the clinical row and outcome (evaluation,
    items then carry ``time`` days and ``event``).
    """

    def __init__(self, dataset_dir: str | Path, task: str = "images", allow_missing_clinical: bool = False,
                 needs_clinical: bool = True):
        from hnc_core.guards import clinical_gate
        from hnc_core.identity import read_cohort

        cohort = read_cohort(dataset_dir, check_images=True)  # the same voxel checks as `hnc-petct validate`
        self.cohort = cohort
        self.failures = cohort.exclusions(task)
        ids = cohort.usable_ids(task)
        self.warnings: dict[str, str] = {}
        if needs_clinical:
            ids, self.warnings, refused = clinical_gate(cohort, ids, allow_missing_clinical, "RFS fusion model")
            self.failures += refused
        log_failures(self.failures, log)
        self.items = []
        for pid in ids:
            rec = cohort.patients[pid]
            row = cohort.clinical.loc[pid].to_dict() if pid in cohort.clinical.index else None
            item = {"id": pid, "image": [str(rec.ct), str(rec.pet)], "clinical": row}
            if task == "rfs":
                y = cohort.survival_outcome([pid])
                item["time"], item["event"] = float(y["time"][0]), float(y["event"][0])
            self.items.append(item)


class PreprocessedDataset(torch.utils.data.Dataset):
    """``transform`` applied once to every item of ``data``; failing items go to ``failures`` (not dropped
    silently: the writer lists them in ``predictions.csv`` / ``failures.json`` and the log names them)."""

    def __init__(self, data: list[dict], transform, failures: list[dict] | None = None, progress: bool = False):
        from tqdm.auto import tqdm

        self.failures = failures if failures is not None else []
        self.items = []
        for item in tqdm(data, desc="preprocessing", unit="patient", disable=not progress):
            pid = item.get("id", "?")
            try:
                out = transform(dict(item))
            except Exception as exc:  # noqa: BLE001 - report the patient, go on with the cohort
                rec = from_exception(pid, exc, item.get("image") or ())
                log_failures([rec], log)
                self.failures.append(rec)
                continue
            out.pop("crop_meta", None)
            self.items.append(out)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def load_network(network: torch.nn.Module, path: str | Path, sha256_file: str | Path | None = None,
                 device: str | torch.device = "cpu", expect: dict | None = None) -> torch.nn.Module:
    """:func:`_load_network`; a weights problem ends the run with one ``error:`` line (exit 1)."""
    return _guarded(_load_network)(network, path, sha256_file, device, expect)


def _load_network(network: torch.nn.Module, path: str | Path, sha256_file: str | Path | None = None,
                  device: str | torch.device = "cpu", expect: dict | None = None) -> torch.nn.Module:
    """Load ``path`` (state dict, ``weights_only=True``) into ``network`` strictly, after checking it
    against the sha256 recorded in ``sha256_file`` (the manifest's ``export`` entry) when given.

    ``expect``: settings the config declares (e.g. ``image_size``, ``clinical_set``) that must equal the
    trained manifest's; a difference is an error, never silently ignored."""
    from survival_head.io.checkpoints import WeightsError, load_weights

    sha = None
    if sha256_file is not None:
        man = Path(sha256_file)
        if not man.is_file():
            raise WeightsError(f"no trained model in {man.parent} ({man.name} missing): run the bundle's "
                               "train.json first; refusing to predict with random weights")
        manifest = json.loads(man.read_text())
        sha = manifest.get("export", {}).get(Path(path).name)
        bad = {k: (v, manifest.get(k)) for k, v in (expect or {}).items() if manifest.get(k) != v}
        if bad:
            raise ValueError("config does not match the trained model in " + str(man.parent) + ": " + ", ".join(
                f"{k} = {v!r} in the config, {t!r} trained" for k, (v, t) in bad.items()))
    network.load_state_dict(load_weights(path, sha))
    return network.to(device).eval()


def trained_setting(models_dir: str | Path, key: str):
    """:func:`_trained_setting`; a missing or modified model file ends the run with one ``error:`` line."""
    return _guarded(_trained_setting)(models_dir, key)


def _trained_setting(models_dir: str | Path, key: str):
    """A setting of the trained model from ``models_dir/manifest.json`` (``n_folds``, ``image_size``, ...)."""
    from survival_head.rfs.workflows import load_manifest

    man = load_manifest(models_dir)
    if key == "n_folds":
        return len(man["folds"])
    return man[key]


class Task2RiskWriter(PredictionWriter):
    """Ignite handler: collect ``(id, pred)`` per iteration; at completion write the Task-2 outputs.

    Parameters
    ----------
    output_dir : folder of ``predictions.json``, ``predictions.csv``, ``failures.json``.
    failures : failure records to report (e.g. ``@dataset.failures``).
    """

    def collect(self, engine) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):  # both decollated, one per patient
            self.rows.append({"PatientID": str(item["id"]),
                              "Prediction": float(torch.as_tensor(out["pred"]).reshape(-1)[0])})

    def write(self, engine=None) -> dict:
        """Write the outputs; nothing predicted ends the run (exit 1), a partial set never replaces a fuller
        earlier ``predictions.json`` (it goes to ``predictions.partial.*``)."""
        from hnc_core.io import write_csv_atomic, write_json_atomic

        suffix = self.begin_write(len(self.rows))
        write_json_atomic(self.output_dir / f"predictions{suffix}.json", self.rows)
        rows = pd.DataFrame(self.rows, columns=["PatientID", "Prediction"]).assign(status="ok", error="")
        rows["warning"] = [self.warnings.get(r["PatientID"], "") for r in self.rows]
        fails = pd.DataFrame([{"PatientID": f["PatientID"], "Prediction": np.nan, "status": "failed",
                               "error": f"{f['file']}: {f['error']}", "warning": ""} for f in self.failures])
        table = pd.concat([rows, fails], ignore_index=True) if len(fails) else rows
        write_csv_atomic(table.reindex(columns=["PatientID", "Prediction", "status", "error", "warning"]),
                         self.output_dir / f"predictions{suffix}.csv")
        return {"predictions": self.rows, "failures": self.failures, "partial": bool(suffix)}


class KFoldTrainer:
    """``train#trainer`` of ``train.json``: trains the K-fold ensemble on the patients of ``dataset`` and
    writes ``models/model.pt`` + ``model.ts`` (:func:`survival_head.rfs.export.train_and_export`).

    Parameters
    ----------
    dataset : :class:`CohortDatalist` (task ``"rfs"``) of the training cohort; its items are the patients.
    inferer : only ``monai.inferers.SimpleInferer`` is supported (the fold networks see whole crops).
    max_epochs : epochs per fold network. Other keyword arguments go to
        :func:`survival_head.rfs.workflows.train_folds` (``image_size``, ``n_folds``, ...).
    """

    def __init__(self, dataset: CohortDatalist, inferer, max_epochs: int, models_dir: str | Path,
                 meta_file: str | Path | None = None, inference_file: str | Path | None = None, **train_kwargs):
        from monai.inferers import SimpleInferer

        if type(inferer) is not SimpleInferer:
            raise ValueError(f"the RFS trainer supports monai.inferers.SimpleInferer only, got {type(inferer).__name__}")
        self.dataset, self.inferer, self.max_epochs = dataset, inferer, int(max_epochs)
        self.models_dir, self.meta_file, self.inference_file = models_dir, meta_file, inference_file
        self.train_kwargs = train_kwargs

    def run(self) -> dict:
        from survival_head.rfs.export import train_and_export

        log_failures(self.dataset.failures, log)
        return train_and_export(self.meta_file, self.inference_file, cohort_dir=self.dataset.cohort.root,
                                models_dir=self.models_dir, max_epochs=self.max_epochs,
                                ids=[it["id"] for it in self.dataset.items], **self.train_kwargs)


class SurvivalMetricsWriter(Task2RiskWriter):
    """:class:`Task2RiskWriter` that also writes ``metrics.json`` (Harrell's C with bootstrap CI, Uno's C, IBS,
    oracle C on synthetic cohorts) and ``km_plot.png`` for a cohort with outcomes.

    Reference for Uno's C / IBS and the KM split: the training patients' out-of-fold risks in
    ``models_dir/manifest.json`` (the KM threshold is their median, fixed before seeing this cohort).
    """

    def __init__(self, output_dir: str | Path, datalist: CohortDatalist, models_dir: str | Path,
                 failures: list[dict] | None = None, n_boot: int = 1000):
        super().__init__(output_dir, failures)
        self.datalist, self.models_dir, self.n_boot = datalist, models_dir, int(n_boot)

    def write(self, engine=None) -> dict:
        from hnc_core.io import write_json_atomic
        from survival_head.rfs.evaluation import _surv, oracle_cindex, survival_report
        from survival_head.rfs.plots import km_plot
        from survival_head.rfs.workflows import load_manifest

        out = super().write(engine)
        manifest = load_manifest(self.models_dir)
        oof = manifest["oof"]
        y_ref, r_ref = _surv(oof["event"], oof["time"]), np.asarray(oof["risk"], float)
        ids = [r["PatientID"] for r in self.rows]
        risk = np.array([r["Prediction"] for r in self.rows], float)
        y = self.datalist.cohort.survival_outcome(ids)
        metrics = {"image_size": manifest["image_size"], "mode": manifest["mode"],
                   "train_config": manifest["train_config"], "failures": self.failures,
                   **survival_report(y, risk, y_ref, r_ref, self.n_boot)}
        metrics["oracle_c"] = oracle_cindex(self.datalist.cohort.root, ids, y)
        metrics["km"] = km_plot(y, risk, self.output_dir / "km_plot.png", thresholds=[float(np.median(r_ref))])
        metrics["fold_weights"] = manifest["ensemble"]["weights"]
        write_json_atomic(self.output_dir / "metrics.json", metrics)
        return {**out, "metrics": metrics}
