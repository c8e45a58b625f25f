"""PET/CT preprocessing of the RFS model as MONAI transforms (array transform + ``...d`` wrapper).

The pipeline (one path for training, evaluation and inference, see :func:`rfs_preprocessing`)::

    LoadPetCtd               CT / PET NIfTI paths -> SimpleITK images (physical geometry kept)
    PetGuidedCropResampled   crop box anchored on the largest high-uptake region in the upper PET
                             (the brain) and hung below it (vertex -> thoracic inlet), CT and PET
                             resampled ONCE onto an S^3 grid covering the box
    NormalizePetCtd          CT clipped to [-1000, 1000] HU -> [0, 1]; PET z-scored -> (2, S, S, S)

Box placement. The brain is the one reliable high-uptake landmark in every head-and-neck PET, so it
*locates* the head, but the tumours lie below it: oropharynx ~80-120 mm, larynx/hypopharynx and low
level-IV nodes ~150-230 mm below the brain's FDG centroid. A box centred on the brain would spend
155 mm above that centroid (the vertex is only ~50-70 mm above it, so ~90 mm of air) and reach only
155 mm down, cutting off low-neck disease. The box is therefore placed with its superior face
``SUPERIOR_MARGIN_MM`` = 70 mm above the anchor (vertex + a few mm of margin) and extends
310 - 70 = 240 mm below it, down to the thoracic inlet; x and y stay centred on the anchor. Patient
"superior" is +z in the physical (LPS) frame SimpleITK reads.

The box is 200 x 200 x 310 mm (x, y, z), so the output spacing is box / S (2.08 x 2.08 x 3.23 mm at
S = 96). Resampling directly onto that grid gives the same result as the reference recipe
"PET onto CT grid -> 1 mm isotropic -> crop -> resize to S^3" at a fraction of the cost: CT is
Gaussian-smoothed (anti-aliasing, only inside the box) before linear interpolation; PET (4 mm) is
up-sampled with linear interpolation; voxels outside the scan are padded (CT -1000 HU, PET 0 SUV).
"""

from __future__ import annotations

import logging
import warnings
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

log = logging.getLogger(__name__)

BOX_MM = (200.0, 200.0, 310.0)
SUPERIOR_MARGIN_MM = 70.0  # box top above the brain anchor; see the module docstring
CT_RANGE_HU = (-1000.0, 1000.0)


class PetCtLoadError(RuntimeError):
    """A patient's image could not be read; the message names the patient and the file."""


class CropRegionWarning(UserWarning):
    """No high-uptake region found in the upper PET: the documented fallback centre is used."""


# ------------------------------------------------------------------------------------------ loading


class LoadPetCt(Transform):
    """Read one NIfTI file with SimpleITK (keeps origin/spacing/direction).

    ``as_float32=False`` keeps the stored pixel type (CT is int16 HU): the full-size CT is then never
    converted as a whole; :func:`resample_onto` casts only the region under the crop box.
    """

    def __init__(self, as_float32: bool = True):
        self.as_float32 = as_float32

    def __call__(self, path: str, patient_id: str = "?"):
        import SimpleITK as sitk

        try:
            if self.as_float32:
                return sitk.ReadImage(str(path), sitk.sitkFloat32)
            return sitk.ReadImage(str(path))
        except Exception as exc:  # noqa: BLE001 - SimpleITK raises RuntimeError with a long text
            first = str(exc).strip().splitlines()
            detail = next((ln.strip() for ln in first if "rror" in ln), first[0] if first else "")
            err = PetCtLoadError(f"patient {patient_id}: cannot read {path}: {detail[:200]}")
            err.filename = str(path)
            raise err from exc


class LoadPetCtd(MapTransform):
    """Dict wrapper of :class:`LoadPetCt`; ``data["id"]`` (if present) names the patient in errors.

    ``native_keys`` keep their stored pixel type (default: the CT, int16 HU), which saves converting the
    whole 512 x 512 x 200 CT to float32. (Reading CT and PET in two threads was measured slower: 0.52 s
    vs 0.27 s serial on 2 cores.)
    """

    def __init__(self, keys: KeysCollection = ("ct", "pet"), allow_missing_keys: bool = False,
                 native_keys: Sequence[str] = ("ct",)):
        super().__init__(keys, allow_missing_keys)
        self.native_keys = set(native_keys)
        self.native, self.float32 = LoadPetCt(as_float32=False), LoadPetCt(as_float32=True)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            load = self.native if key in self.native_keys else self.float32
            d[key] = load(d[key], str(d.get("id", "?")))
        return d


# --------------------------------------------------------------------------------------- crop box


def find_crop_centre(
    pet,
    upper_fraction: float = 0.4,
    rel_threshold: float = 0.5,
    min_voxels: int = 8,
    patient_id: str = "?",
) -> tuple[np.ndarray, bool]:
    """Physical centre (x, y, z mm) of the largest high-uptake connected region in the upper PET.

    Parameters
    ----------
    pet : SimpleITK image (SUV).
    upper_fraction : superior fraction of the PET z extent that is searched (the brain lies there).
    rel_threshold : voxels above ``rel_threshold * 99.9th percentile`` of that part are "high".
    min_voxels : smaller regions do not count.

    Returns
    -------
    (centre_mm, found). When nothing is found the fallback is the centre of the PET field of view
    in x/y and the centre of its upper part in z, with a :class:`CropRegionWarning`.
    """
    from scipy import ndimage

    arr = np.asarray(_array_view(pet), dtype=np.float32)  # (z, y, x)
    nz = arr.shape[0]
    zs = np.array([pet.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, float(k)))[2] for k in (0, nz - 1)])
    superior_last = zs[1] >= zs[0]  # index order vs physical superior direction
    n_up = max(1, int(round(nz * upper_fraction)))
    z0 = nz - n_up if superior_last else 0
    part = arr[z0:z0 + n_up]
    found = False
    if part.size and np.isfinite(part).all() and part.max() > 0:
        thr = rel_threshold * float(np.percentile(part, 99.9))
        labels, n = ndimage.label(part > thr) if thr > 0 else (None, 0)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            best = int(np.argmax(sizes)) + 1
            if sizes[best - 1] >= min_voxels:
                cz, cy, cx = ndimage.center_of_mass(labels == best)
                found = True
    if not found:
        cz, cy, cx = (n_up - 1) / 2.0, (arr.shape[1] - 1) / 2.0, (arr.shape[2] - 1) / 2.0
        msg = (f"patient {patient_id}: no high-uptake region in the upper {upper_fraction:.0%} of the PET; "
               "falling back to the centre of the PET field of view (x, y) and of its upper part (z)")
        warnings.warn(msg, CropRegionWarning, stacklevel=2)
        log.warning(msg)
    centre = np.array(pet.TransformContinuousIndexToPhysicalPoint((float(cx), float(cy), float(cz + z0))))
    return centre, found


def crop_box_centre(anchor_mm: Sequence[float], box_mm: Sequence[float] = BOX_MM,
                    superior_margin_mm: float = SUPERIOR_MARGIN_MM) -> np.ndarray:
    """Physical centre (x, y, z mm) of the crop box hung from the brain anchor.

    The box top lies ``superior_margin_mm`` above the anchor (z is superior), so it spans
    ``[anchor_z - (box_z - margin), anchor_z + margin]``; x and y are the anchor's.
    """
    c = np.asarray(anchor_mm, float).copy()
    c[2] = c[2] + float(superior_margin_mm) - float(box_mm[2]) / 2.0
    return c


def _array_view(img):
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(img)


def box_reference(centre_mm: Sequence[float], size: int, box_mm: Sequence[float] = BOX_MM):
    """SimpleITK reference image: ``size^3`` voxels, identity direction, covering the box around centre."""
    import SimpleITK as sitk

    spacing = np.asarray(box_mm, float) / size
    origin = np.asarray(centre_mm, float) - np.asarray(box_mm, float) / 2 + spacing / 2
    ref = sitk.Image([int(size)] * 3, sitk.sitkFloat32)
    ref.SetSpacing(tuple(float(s) for s in spacing))
    ref.SetOrigin(tuple(float(o) for o in origin))
    return ref


def resample_onto(img, ref, default: float, antialias: bool = True):
    """Resample ``img`` once onto ``ref`` (linear); Gaussian anti-aliasing where ``img`` is finer.

    Only the part of ``img`` under the box (plus a 3-sigma margin) is smoothed. Returns (z, y, x) float32.
    """
    import SimpleITK as sitk

    in_sp, out_sp = np.array(img.GetSpacing()), np.array(ref.GetSpacing())
    sigma = np.sqrt(np.clip(out_sp ** 2 - in_sp ** 2, 0, None)) / 2.355  # FWHM-matched, mm
    src = img
    if antialias and (sigma > 0.25 * in_sp).any():
        src = _roi_under(img, ref, margin_mm=3 * sigma + 2 * in_sp)
        if src is not None:
            if src.GetPixelID() != sitk.sitkFloat32:  # smooth in float, never in the stored integer type
                src = sitk.Cast(src, sitk.sitkFloat32)
            g = sitk.SmoothingRecursiveGaussianImageFilter()
            g.SetSigma([float(max(s, 1e-3)) for s in sigma])
            src = g.Execute(src)
    if src is None:  # box does not overlap the image at all
        return np.full(ref.GetSize()[::-1], default, np.float32)
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _roi_under(img, ref, margin_mm):
    """Sub-image of ``img`` covering ``ref``'s physical box (+ margin), or None when disjoint."""
    import SimpleITK as sitk
    from hnc_core.cohort import physical_box

    lo, hi = physical_box(ref)
    lo, hi = lo - margin_mm, hi + margin_mm
    corners = [(a, b, c) for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
    idx = np.array([img.TransformPhysicalPointToContinuousIndex(tuple(map(float, p))) for p in corners])
    size = np.array(img.GetSize())
    start = np.clip(np.floor(idx.min(0)).astype(int), 0, size)
    stop = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, size)
    if (stop - start <= 0).any():
        return None
    return sitk.RegionOfInterest(img, [int(v) for v in stop - start], [int(v) for v in start])


class PetGuidedCropResample(Transform):
    """(CT image, PET image) -> (2, S, S, S) float32 array [CT HU, PET SUV] on the PET-guided box grid.

    Parameters
    ----------
    image_size : output edge S in voxels (paper: 96).
    box_mm : physical box (x, y, z) in mm.
    upper_fraction, rel_threshold : see :func:`find_crop_centre`.
    superior_margin_mm : box top above the brain anchor (see :func:`crop_box_centre`).
    """

    def __init__(self, image_size: int = 96, box_mm: Sequence[float] = BOX_MM, upper_fraction: float = 0.4,
                 rel_threshold: float = 0.5, antialias: bool = True,
                 superior_margin_mm: float = SUPERIOR_MARGIN_MM):
        self.image_size = int(image_size)
        self.box_mm = tuple(float(b) for b in box_mm)
        self.superior_margin_mm = float(superior_margin_mm)
        self.upper_fraction = upper_fraction
        self.rel_threshold = rel_threshold
        self.antialias = antialias

    def __call__(self, ct, pet, patient_id: str = "?") -> tuple[np.ndarray, dict]:
        anchor, found = find_crop_centre(pet, self.upper_fraction, self.rel_threshold, patient_id=patient_id)
        centre = crop_box_centre(anchor, self.box_mm, self.superior_margin_mm)
        ref = box_reference(centre, self.image_size, self.box_mm)
        ct_arr = resample_onto(ct, ref, CT_RANGE_HU[0], self.antialias)
        pet_arr = resample_onto(pet, ref, 0.0, self.antialias)
        meta = {"crop_centre_mm": centre.tolist(), "crop_anchor_mm": anchor.tolist(), "crop_region_found": found,
                "spacing_mm": list(ref.GetSpacing()), "origin_mm": list(ref.GetOrigin())}
        return np.stack([ct_arr, pet_arr]).astype(np.float32), meta


class PetGuidedCropResampled(MapTransform):
    """Dict wrapper: reads ``ct``/``pet`` images, writes ``image`` (2, S, S, S) and ``crop_meta``."""

    def __init__(self, keys: KeysCollection = ("ct", "pet"), output_key: str = "image", image_size: int = 96,
                 box_mm: Sequence[float] = BOX_MM, upper_fraction: float = 0.4, rel_threshold: float = 0.5,
                 antialias: bool = True):
        super().__init__(keys)
        self.output_key = output_key
        self.op = PetGuidedCropResample(image_size, box_mm, upper_fraction, rel_threshold, antialias)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        ct_key, pet_key = self.keys
        d[self.output_key], d["crop_meta"] = self.op(d[ct_key], d[pet_key], str(d.get("id", "?")))
        d.pop(ct_key), d.pop(pet_key)  # free the full-size images
        return d


# ---------------------------------------------------------------------------------- normalisation


class NormalizePetCt(Transform):
    """Channel 0 (CT HU) clipped to [-1000, 1000] and scaled to [0, 1]; channel 1 (PET) z-scored.

    Input and output: array/tensor (2, S, S, S); output float32 torch tensor.
    """

    def __init__(self, ct_range: Sequence[float] = CT_RANGE_HU, eps: float = 1e-6):
        self.ct_range = (float(ct_range[0]), float(ct_range[1]))
        self.eps = eps

    def __call__(self, img) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(img), dtype=torch.float32).clone()
        lo, hi = self.ct_range
        x[0] = (x[0].clamp(lo, hi) - lo) / (hi - lo)
        pet = x[1]
        x[1] = (pet - pet.mean()) / (pet.std() + self.eps)
        return x


class NormalizePetCtd(MapTransform):
    """Dict wrapper of :class:`NormalizePetCt`."""

    def __init__(self, keys: KeysCollection = ("image",), ct_range: Sequence[float] = CT_RANGE_HU):
        super().__init__(keys)
        self.op = NormalizePetCt(ct_range)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


def rfs_preprocessing(image_size: int = 96, box_mm: Sequence[float] = BOX_MM, upper_fraction: float = 0.4,
                      rel_threshold: float = 0.5):
    """The one preprocessing chain shared by training, evaluation and inference (MONAI ``Compose``).

    Input dict: ``{"id", "ct": path, "pet": path, ...}``; output adds ``image`` (2, S, S, S) float32.
    """
    from monai.transforms import Compose

    return Compose([
        LoadPetCtd(("ct", "pet")),
        PetGuidedCropResampled(("ct", "pet"), "image", image_size, box_mm, upper_fraction, rel_threshold),
        NormalizePetCtd(("image",)),
    ])
