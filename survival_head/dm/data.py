"""Assemble the DM inputs of a cohort: labels, clinical rows, radiomics table and image tensors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hnc_core import schema
from hnc_core.failures import by_patient, failure
from hnc_core.identity import read_cohort

log = logging.getLogger(__name__)


@dataclass
class DMData:
    """Inputs of ``N`` patients in a fixed order.

    ``y`` (N,) 0/1 or None; ``clinical`` DataFrame (N rows, index PatientID); ``radiomics`` DataFrame
    (N rows, features per region x 2); ``images`` float32 (N, C, S, S, S); ``failures`` the records
    ``{"PatientID", "file", "error"}`` of the patients left out (``errors``: the same as PatientID -> error).
    """

    ids: list[str]
    y: np.ndarray | None
    clinical: pd.DataFrame
    radiomics: pd.DataFrame
    images: torch.Tensor
    failures: list[dict] = field(default_factory=list)

    @property
    def errors(self) -> dict[str, str]:
        return by_patient(self.failures)

    def subset(self, idx) -> "DMData":
        idx = np.asarray(idx)
        return DMData([self.ids[i] for i in idx], None if self.y is None else self.y[idx],
                      self.clinical.iloc[idx], self.radiomics.iloc[idx], self.images[torch.as_tensor(idx)],
                      self.failures)


def _images(cohort, ids, masks, image_size, fov_mm, include_nodes, ring_mm, organ_mask_dirs, failures, progress):
    from survival_head.dm.transforms import image_transforms

    tf = image_transforms(image_size, fov_mm, include_nodes, ring_mm, organ_mask_dirs)
    out = {}
    for pid in tqdm(ids, desc="DM image crops", unit="patient", disable=not progress):
        try:
            out[pid] = tf({"PatientID": pid, "ct": str(cohort.patients[pid].ct), "mask": str(masks[pid])})["image"]
        except Exception as exc:  # noqa: BLE001 - one bad patient must not stop the batch
            failures.append(failure(pid, f"{cohort.patients[pid].ct} / {masks[pid]}",
                                    str(exc) if pid in str(exc) else f"[{pid}] {exc}"))
            log.error("image crop failed: %s", failures[-1]["error"])
    return out


def load_dm_data(
    cohort_dir: str | Path,
    radiomics_cache: str | Path,
    *,
    image_size: int = 64,
    fov_mm: float = 96.0,
    mask_dir: str | Path | None = None,
    include_nodes: bool = True,
    ring_mm: float = 8.0,
    radiomics_params=None,
    organ_mask_dirs: dict | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    require_labels: bool = True,
    progress: bool = True,
) -> DMData:
    """Read a cohort into :class:`DMData`. Patients failing any step are dropped and listed in ``failures``.

    ``require_labels``: keep only patients with a DM label (training/evaluation); otherwise every
    patient with a CT and a tumour mask (inference).
    """
    from survival_head.radiomics.cohort import extract_cohort

    cohort = read_cohort(cohort_dir, check_images=True)  # the same voxel checks as `hnc-petct validate`
    ids, failures = candidate_ids(cohort, require_labels, mask_dir)
    masks = tumour_masks(cohort, ids, mask_dir, failures)
    ids = [i for i in ids if i in masks]
    if not ids:
        raise ValueError(f"no usable patients in {cohort_dir} ({'with a DM label, ' if require_labels else ''}"
                         f"CT and tumour mask); problems: {[f['error'] for f in failures[:3]]}")
    rad = extract_cohort(cohort_dir, radiomics_cache, workers, scheduler, mask_dir, params=radiomics_params,
                         include_nodes=include_nodes, ring_mm=ring_mm, ids=ids, progress=progress)
    failures += rad.attrs.get("failures", [])
    imgs = _images(cohort, [i for i in ids if i in rad.index], masks, image_size, fov_mm, include_nodes, ring_mm,
                   organ_mask_dirs, failures, progress)
    ids = [i for i in ids if i in imgs]
    clin = cohort.clinical.reindex(ids)
    y = clin[schema.DM].astype(float).astype(int).to_numpy() if require_labels else None
    return DMData(ids, y, clin, rad.loc[ids], torch.stack([imgs[i] for i in ids]), failures)


def candidate_ids(cohort, labelled_only: bool, mask_dir=None) -> tuple[list[str], list[dict]]:
    """Patients the DM model may read, and ``{"PatientID", "file", "error"}`` records of the others:
    ``labelled_only`` (training/evaluation): usable for the DM task (a label); otherwise every patient whose
    CT (and, without ``mask_dir``, label) passes the cohort checks."""
    if labelled_only:
        ids = cohort.usable_ids("dm")
        failures = [f for f in cohort.exclusions("dm") if cohort.patients[f["PatientID"]].folder is not None]
        return ids, failures
    return _inference_ids(cohort, mask_dir is None)


def tumour_masks(cohort, ids, mask_dir, failures: list[dict]) -> dict[str, object]:
    """PatientID -> tumour-mask file (the HECKTOR label or ``mask_dir/<PatientID>.nii.gz``); a patient without
    one gets a failure record in ``failures`` instead."""
    from survival_head.dm.regions import RegionError, mask_file

    masks = {}
    for pid in ids:
        try:
            masks[pid] = mask_file(pid, cohort.patients[pid].label, mask_dir)
        except RegionError as exc:
            failures.append(failure(pid, mask_dir or cohort.patients[pid].label, str(exc)))
    return masks


def _inference_ids(cohort, need_label: bool) -> tuple[list[str], list[dict]]:
    """Patients whose CT (and label, when it is the tumour mask) pass the cohort checks; failures for the rest.

    The DM model reads the CT and the tumour mask only, so PET problems do not exclude a patient here.
    """
    ids, failures = [], []
    for pid, rec in sorted(cohort.patients.items()):
        if rec.folder is None:
            continue
        pet = str(rec.pet) if rec.pet else None
        bad = [p for p in cohort.problems_for(pid) if p.severity == "error" and (
            (p.affects == "images" and p.code not in ("missing_pet", "no_overlap") and (pet is None or p.file != pet))
            or (need_label and p.affects == "label"))]
        if rec.ct is None and not bad:
            bad = [p for p in cohort.problems_for(pid) if p.code == "missing_ct"]
        if bad:
            failures.append(failure(pid, bad[0].file, "; ".join(f"{Path(p.file).name if p.file else ''}: {p.message}"
                                                                for p in bad)))
        elif rec.ct is not None:
            ids.append(pid)
    return ids, failures


def load_for_config(cohort_dir, cache, cfg, mask_dir, radiomics_params, workers, scheduler, labels, progress,
                    organ_mask_dirs=None) -> DMData:
    """:func:`load_dm_data` with the image/region settings of a :class:`~survival_head.dm.training.DMConfig`
    (radiomics cache default: ``<cohort>/.dm_radiomics_cache``)."""
    return load_dm_data(cohort_dir, cache or Path(cohort_dir) / ".dm_radiomics_cache", image_size=cfg.image_size,
                        fov_mm=cfg.fov_mm, mask_dir=mask_dir, include_nodes=cfg.include_nodes, ring_mm=cfg.ring_mm,
                        radiomics_params=radiomics_params, organ_mask_dirs=organ_mask_dirs, workers=workers,
                        scheduler=scheduler, require_labels=labels, progress=progress)
