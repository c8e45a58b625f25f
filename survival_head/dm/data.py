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
from hnc_core.identity import read_cohort

log = logging.getLogger(__name__)


@dataclass
class DMData:
    """Inputs of ``N`` patients in a fixed order.

    ``y`` (N,) 0/1 or None; ``clinical`` DataFrame (N rows, index PatientID); ``radiomics`` DataFrame
    (N rows, features per region x 2); ``images`` float32 (N, C, S, S, S); ``errors`` PatientID -> message.
    """

    ids: list[str]
    y: np.ndarray | None
    clinical: pd.DataFrame
    radiomics: pd.DataFrame
    images: torch.Tensor
    errors: dict[str, str] = field(default_factory=dict)

    def subset(self, idx) -> "DMData":
        idx = np.asarray(idx)
        return DMData([self.ids[i] for i in idx], None if self.y is None else self.y[idx],
                      self.clinical.iloc[idx], self.radiomics.iloc[idx], self.images[torch.as_tensor(idx)],
                      self.errors)


def _images(cohort, ids, masks, image_size, fov_mm, include_nodes, ring_mm, organ_mask_dirs, errors, progress):
    from survival_head.dm.transforms import image_transforms

    tf = image_transforms(image_size, fov_mm, include_nodes, ring_mm, organ_mask_dirs)
    out = {}
    for pid in tqdm(ids, desc="DM image crops", unit="patient", disable=not progress):
        try:
            out[pid] = tf({"PatientID": pid, "ct": str(cohort.patients[pid].ct), "mask": str(masks[pid])})["image"]
        except Exception as exc:  # noqa: BLE001 - one bad patient must not stop the batch
            errors[pid] = str(exc) if pid in str(exc) else f"[{pid}] {exc}"
            log.error("image crop failed: %s", errors[pid])
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
    """Read a cohort into :class:`DMData`. Patients failing any step are dropped and listed in ``errors``.

    ``require_labels``: keep only patients with a DM label (training/evaluation); otherwise every
    patient with a CT and a tumour mask (inference).
    """
    from survival_head.dm.regions import RegionError, mask_file
    from survival_head.radiomics.cohort import extract_cohort

    cohort = read_cohort(cohort_dir, check_images=False)
    ids = cohort.usable_ids("dm") if require_labels else sorted(p for p, r in cohort.patients.items() if r.ct)
    errors: dict[str, str] = {}
    masks = {}
    for pid in ids:
        try:
            masks[pid] = mask_file(pid, cohort.patients[pid].label, mask_dir)
        except RegionError as exc:
            errors[pid] = str(exc)
    ids = [i for i in ids if i in masks]
    if not ids:
        raise ValueError(f"no usable patients in {cohort_dir} ({'with a DM label, ' if require_labels else ''}"
                         f"CT and tumour mask); problems: {list(errors.values())[:3]}")
    rad = extract_cohort(cohort_dir, radiomics_cache, workers, scheduler, mask_dir, params=radiomics_params,
                         include_nodes=include_nodes, ring_mm=ring_mm, ids=ids, progress=progress)
    errors.update(rad.attrs.get("errors", {}))
    imgs = _images(cohort, [i for i in ids if i in rad.index], masks, image_size, fov_mm, include_nodes, ring_mm,
                   organ_mask_dirs, errors, progress)
    ids = [i for i in ids if i in imgs]
    clin = cohort.clinical.reindex(ids)
    y = clin[schema.DM].astype(float).astype(int).to_numpy() if require_labels else None
    return DMData(ids, y, clin, rad.loc[ids], torch.stack([imgs[i] for i in ids]), errors)


def load_for_config(cohort_dir, cache, cfg, mask_dir, radiomics_params, workers, scheduler, labels, progress,
                    organ_mask_dirs=None) -> DMData:
    """:func:`load_dm_data` with the image/region settings of a :class:`~survival_head.dm.training.DMConfig`
    (radiomics cache default: ``<cohort>/.dm_radiomics_cache``)."""
    return load_dm_data(cohort_dir, cache or Path(cohort_dir) / ".dm_radiomics_cache", image_size=cfg.image_size,
                        fov_mm=cfg.fov_mm, mask_dir=mask_dir, include_nodes=cfg.include_nodes, ring_mm=cfg.ring_mm,
                        radiomics_params=radiomics_params, organ_mask_dirs=organ_mask_dirs, workers=workers,
                        scheduler=scheduler, require_labels=labels, progress=progress)
