"""Regions of interest for the DM model: body, tumour and peritumoral ring on the CT grid.

Arrays are in SimpleITK/numpy order ``(z, y, x)``; spacings are given ``(x, y, z)`` mm as SimpleITK
reports them and reversed where numpy needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

BODY_HU = -500.0  # body = CT > -500 HU, largest component, holes filled
TISSUE_HU = -500.0  # ring voxels must be tissue: airway / sinus air (filled into the body) is excluded


class RegionError(ValueError):
    """A patient's CT or mask cannot be used; the message names the patient and file."""


@dataclass
class Regions:
    """CT and binary masks of one patient, all on the CT grid.

    ``ct`` float32 HU (z, y, x); ``tumour``/``ring``/``body`` bool (z, y, x); ``spacing`` (x, y, z) mm;
    ``origin`` (x, y, z) mm; ``direction`` 9 floats; ``organs`` optional extra masks by name.
    """

    patient_id: str
    ct: np.ndarray
    tumour: np.ndarray
    ring: np.ndarray
    body: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    organs: dict[str, np.ndarray] = field(default_factory=dict)
    primary: np.ndarray | None = None  # GTVp alone (bool), used to centre the image crop

    def to_sitk(self, name: str):
        """SimpleITK image of ``ct`` (float32) or a mask (uint8) with the CT geometry."""
        import SimpleITK as sitk

        arr = self.ct.astype(np.float32) if name == "ct" else getattr(self, name, None)
        if arr is None:
            arr = self.organs[name]
        img = sitk.GetImageFromArray(arr if name == "ct" else arr.astype(np.uint8))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img


def body_mask(ct: np.ndarray, threshold: float = BODY_HU) -> np.ndarray:
    """Body = largest connected component of ``ct > threshold`` HU with holes filled (slice-wise and 3D)."""
    fg = ct > threshold
    lab, n = ndimage.label(fg)
    if n == 0:
        return fg
    sizes = ndimage.sum_labels(fg, lab, index=np.arange(1, n + 1))
    body = lab == (int(np.argmax(sizes)) + 1)
    for z in range(body.shape[0]):  # airway etc. open at the slab ends: fill per axial slice too
        body[z] = ndimage.binary_fill_holes(body[z])
    return ndimage.binary_fill_holes(body)


def tumour_from_label(label: np.ndarray, include_nodes: bool = True) -> np.ndarray:
    """GTVp (label 1) or GTVp ∪ GTVn (labels 1, 2) as a bool array."""
    return (label == 1) | (label == 2) if include_nodes else label == 1


def peritumoral_ring(tumour: np.ndarray, body: np.ndarray, spacing_xyz, width_mm: float,
                     ct: np.ndarray | None = None, tissue_hu: float = TISSUE_HU) -> np.ndarray:
    """Voxels outside ``tumour`` within ``width_mm`` (Euclidean, mm) of it, inside ``body``, and (when
    ``ct`` (z, y, x) HU is given) tissue, i.e. ``ct > tissue_hu``: the body mask has its holes filled, so
    without this the ring of an oro-/hypopharyngeal tumour would include the airway's air."""
    if width_mm <= 0:
        raise ValueError(f"ring width must be > 0 mm, got {width_mm}")
    if not tumour.any():
        return np.zeros_like(tumour)
    sampling = tuple(float(s) for s in reversed(tuple(spacing_xyz)))
    # Distance only needs computing in the tumour's bounding box grown by the ring width.
    pad = [int(np.ceil(width_mm / s)) + 1 for s in sampling]
    idx = np.argwhere(tumour)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + 1 + pad, tumour.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    dist = ndimage.distance_transform_edt(~tumour[box], sampling=sampling)
    ring = np.zeros_like(tumour)
    ring[box] = (dist > 0) & (dist <= width_mm)
    ring &= body
    if ct is not None:
        ring &= ct > tissue_hu
    return ring


def mask_file(patient_id: str, label_path: Path | None, mask_dir: str | Path | None) -> Path:
    """The tumour-mask file: ``mask_dir/<PatientID>.nii.gz`` when given, else the HECKTOR label."""
    if mask_dir is not None:
        p = Path(mask_dir) / f"{patient_id}.nii.gz"
        if not p.is_file():
            raise RegionError(f"[{patient_id}] {p}: predicted mask not found in --mask_dir")
        return p
    if label_path is None:
        raise RegionError(f"[{patient_id}] no label file (PatientID.nii.gz); pass a prediction folder as mask_dir")
    return Path(label_path)


def _read(path: Path, patient_id: str, what: str):
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes a named error
        raise RegionError(f"[{patient_id}] {path}: cannot read {what}: {exc}") from exc


def _check_same_grid(ref, img, patient_id: str, path: Path) -> None:
    """The cohort validator's grid check (:func:`hnc_core.cohort.grid_mismatch`, same tolerances)."""
    from hnc_core.cohort import grid_mismatch

    diff = grid_mismatch(ref, img)
    if diff:
        raise RegionError(f"[{patient_id}] {path}: mask is not on the CT grid ({diff})")


def load_regions(
    patient_id: str,
    ct_path: str | Path,
    mask_path: str | Path,
    *,
    include_nodes: bool = True,
    ring_mm: float = 8.0,
    organ_mask_dirs: dict[str, str] | None = None,
) -> Regions:
    """Read CT (HU) and tumour mask, build body, tumour and ring masks; raise :class:`RegionError` on bad input."""
    import SimpleITK as sitk

    ct_img = _read(Path(ct_path), patient_id, "CT")
    lab_img = _read(Path(mask_path), patient_id, "tumour mask")
    _check_same_grid(ct_img, lab_img, patient_id, Path(mask_path))
    ct = sitk.GetArrayFromImage(ct_img).astype(np.float32)
    label = np.rint(sitk.GetArrayFromImage(lab_img)).astype(np.int16)
    tumour = tumour_from_label(label, include_nodes)
    if not tumour.any():
        kind = "GTVp or GTVn" if include_nodes else "GTVp"
        raise RegionError(f"[{patient_id}] {mask_path}: mask holds no {kind} voxels")
    body = body_mask(ct)
    ring = peritumoral_ring(tumour, body, ct_img.GetSpacing(), ring_mm, ct=ct)
    organs = {}
    for name, folder in (organ_mask_dirs or {}).items():
        p = Path(folder) / f"{patient_id}.nii.gz"
        if not p.is_file():
            raise RegionError(f"[{patient_id}] {p}: organ mask '{name}' not found")
        img = _read(p, patient_id, f"organ mask '{name}'")
        _check_same_grid(ct_img, img, patient_id, p)
        organs[name] = sitk.GetArrayFromImage(img) > 0
    return Regions(patient_id, ct, tumour, ring, body, ct_img.GetSpacing(), ct_img.GetOrigin(),
                   ct_img.GetDirection(), organs, primary=label == 1)
