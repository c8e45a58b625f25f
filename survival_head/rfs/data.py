"""Cohort -> preprocessed tensors (cached per patient on disk) + clinical table + outcomes.

Every consumer (training, evaluation, inference, ablations) goes through :func:`load_patient_images`,
which runs the single preprocessing chain :func:`survival_head.rfs.transforms.rfs_preprocessing`.
Patients that cannot be used are never dropped silently: each becomes a failure record
``{"PatientID", "file", "error"}`` that is logged and written into the outputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hnc_core.cohort import Cohort
from hnc_core.failures import from_exception, log_failures
from hnc_core.identity import cache_key, read_cohort
from hnc_core.io import atomic_path
from survival_head.rfs.transforms import BOX_MM, rfs_preprocessing

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass
class LoadedCohort:
    """Images and tables of the usable patients, and the failures (one dict per excluded patient)."""

    cohort: Cohort
    ids: list[str]
    images: dict[str, torch.Tensor]
    failures: list[dict] = field(default_factory=list)

    @property
    def clinical(self) -> pd.DataFrame:
        """Clinical rows of ``ids`` (missing rows -> all-NaN, encoded as Unknown later)."""
        return self.cohort.clinical.reindex(self.ids)

    def outcome(self, ids: list[str] | None = None) -> np.ndarray:
        """sksurv structured array (event bool, time days) of ``ids`` (default: all usable)."""
        return self.cohort.survival_outcome(ids if ids is not None else self.ids)


def cohort_exclusions(cohort: Cohort, task: str) -> list[dict]:
    """Failure records for every patient of ``cohort`` that ``task`` cannot use (see ``Cohort.exclusions``)."""
    return cohort.exclusions(task)


def _cache_key(pid: str, ct: Path, pet: Path, params: dict) -> str:
    return cache_key((ct, pet), {**params, "patient": pid}, version=f"rfs-preprocess-{CACHE_VERSION}")


def preprocess_patient(pid: str, ct: Path, pet: Path, image_size: int, cache_dir: Path | None = None,
                       box_mm=BOX_MM) -> torch.Tensor:
    """(2, S, S, S) float32 tensor of one patient, from the disk cache when its inputs are unchanged."""
    params = {"image_size": int(image_size), "box_mm": list(box_mm)}
    cache_file = None
    if cache_dir is not None:
        key = _cache_key(pid, ct, pet, params)
        cache_file = Path(cache_dir) / f"S{image_size}" / f"{pid}.pt"
        if cache_file.is_file():
            try:
                blob = torch.load(cache_file, weights_only=True)
                if blob.get("key") == key:
                    return blob["image"]
            except Exception:  # noqa: BLE001 - a corrupt cache entry is just recomputed
                log.warning("patient %s: unreadable cache entry %s, recomputing", pid, cache_file)
    d = rfs_preprocessing(image_size, box_mm)({"id": pid, "ct": str(ct), "pet": str(pet)})
    image = d["image"].contiguous()
    if cache_file is not None:
        with atomic_path(cache_file) as tmp:
            torch.save({"key": key, "image": image}, tmp)
    return image


def load_patient_images(cohort_dir: str | Path, image_size: int, task: str = "rfs", cache_dir: str | Path | None = None,
                        progress: bool = True) -> LoadedCohort:
    """Validate the cohort, preprocess every usable patient, collect failures by patient ID.

    ``task="rfs"`` needs images + clinical row + outcome (training/evaluation); ``task="images"``
    needs images only (inference on a test set without outcomes).
    """
    from tqdm.auto import tqdm

    cohort = read_cohort(cohort_dir, check_images=True)  # the same voxel checks as `hnc-petct validate`
    failures = cohort.exclusions(task)
    images: dict[str, torch.Tensor] = {}
    ids = cohort.usable_ids(task)
    for pid in tqdm(ids, desc=f"preprocessing {image_size}^3", unit="patient", disable=not progress):
        rec = cohort.patients[pid]
        try:
            images[pid] = preprocess_patient(pid, rec.ct, rec.pet, image_size, cache_dir)
        except Exception as exc:  # noqa: BLE001 - report the patient, go on with the batch
            failures.append(_failure(pid, rec, exc))
    log_failures(failures, log)
    ok = [pid for pid in ids if pid in images]
    return LoadedCohort(cohort=cohort, ids=ok, images=images, failures=failures)


def _failure(pid: str, rec, exc: Exception) -> dict:
    """Failure record naming the file and the root cause, not MONAI's "applying transform <repr>" wrapper."""
    return from_exception(pid, exc, (rec.ct, rec.pet), what="preprocessing failed")
