"""MONAI transforms that turn a patient's CT + tumour mask into the DM network's image input.

Output image: float32 tensor ``(C, S, S, S)`` (z, y, x) on a cube of side ``fov_mm`` (mm) centred on
the primary tumour (GTVp; GTVp ∪ GTVn if there is no GTVp), resampled to ``S = image_size`` voxels.
Channels: CT windowed to [0, 1] (``hu_window`` HU), tumour mask, peritumoral mask, optional organ masks
(masks linearly resampled, i.e. partial-volume fractions in [0, 1]).
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, Transform

from survival_head.dm.regions import Regions, load_regions


def check_image_size(image_size: int) -> int:
    """Swin needs 5 halvings: sides must be positive multiples of 32."""
    s = int(image_size)
    if s <= 0 or s % 32:
        raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
    return s


class TumourCrop(Transform):
    """Regions -> ``(3 + n_organs, S, S, S)`` float32 tensor (see module docstring)."""

    def __init__(self, image_size: int = 64, fov_mm: float = 96.0, hu_window: Sequence[float] = (-200.0, 300.0)):
        self.image_size = check_image_size(image_size)
        self.fov_mm = float(fov_mm)
        self.hu_window = (float(hu_window[0]), float(hu_window[1]))

    def _reference(self, regions: Regions):
        import SimpleITK as sitk

        ct = regions.to_sitk("ct")
        idx = np.argwhere(regions.primary if regions.primary is not None and regions.primary.any()
                          else regions.tumour)
        centre_zyx = (idx.min(0) + idx.max(0)) / 2.0
        centre = ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in centre_zyx[::-1]])
        sp = self.fov_mm / self.image_size
        ref = sitk.Image([self.image_size] * 3, sitk.sitkFloat32)
        ref.SetSpacing((sp, sp, sp))
        ref.SetOrigin(tuple(c - self.fov_mm / 2 + sp / 2 for c in centre))
        return ct, ref

    def __call__(self, regions: Regions) -> torch.Tensor:
        import SimpleITK as sitk

        ct, ref = self._reference(regions)
        lo, hi = self.hu_window
        out = sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
        chans = [np.clip((sitk.GetArrayFromImage(out) - lo) / (hi - lo), 0.0, 1.0)]
        for name in ("tumour", "ring", *sorted(regions.organs)):
            m = sitk.Cast(regions.to_sitk(name), sitk.sitkFloat32)
            chans.append(sitk.GetArrayFromImage(sitk.Resample(m, ref, sitk.Transform(), sitk.sitkLinear, 0.0)))
        return torch.from_numpy(np.stack(chans).astype(np.float32))


class LoadRegionsd(MapTransform):
    """``d[ct_key]`` (CT path), ``d[mask_key]`` (mask path), ``d["PatientID"]`` -> ``d[output_key]`` Regions."""

    def __init__(self, ct_key: str = "ct", mask_key: str = "mask", output_key: str = "regions",
                 include_nodes: bool = True, ring_mm: float = 8.0, organ_mask_dirs: dict | None = None):
        super().__init__(keys=[ct_key, mask_key])
        self.ct_key, self.mask_key, self.output_key = ct_key, mask_key, output_key
        self.include_nodes, self.ring_mm, self.organ_mask_dirs = include_nodes, ring_mm, organ_mask_dirs

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        d[self.output_key] = load_regions(str(d.get("PatientID", "?")), d[self.ct_key], d[self.mask_key],
                                          include_nodes=self.include_nodes, ring_mm=self.ring_mm,
                                          organ_mask_dirs=self.organ_mask_dirs)
        return d


class TumourCropd(MapTransform):
    """Dict wrapper of :class:`TumourCrop`: ``d[key]`` Regions -> ``d[output_key]`` tensor; drops the Regions."""

    def __init__(self, key: str = "regions", output_key: str = "image", image_size: int = 64,
                 fov_mm: float = 96.0, hu_window: Sequence[float] = (-200.0, 300.0)):
        super().__init__(keys=[key])
        self.key, self.output_key = key, output_key
        self.crop = TumourCrop(image_size, fov_mm, hu_window)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        d[self.output_key] = self.crop(d.pop(self.key))
        return d


class RandLeftRightFlip(Transform):
    """Flip ``(C, Z, Y, X)`` or ``(B, C, Z, Y, X)`` along x (patient left-right) with probability ``prob``."""

    def __init__(self, prob: float = 0.5, seed: int = 0):
        self.prob = prob
        self.rng = np.random.default_rng(seed)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return torch.flip(img, dims=(-1,)) if self.rng.random() < self.prob else img


def image_transforms(image_size: int = 64, fov_mm: float = 96.0, include_nodes: bool = True,
                     ring_mm: float = 8.0, organ_mask_dirs: dict | None = None):
    """Preprocessing chain: paths -> ``d["image"]`` (C, S, S, S)."""
    from monai.transforms import Compose

    return Compose([
        LoadRegionsd(include_nodes=include_nodes, ring_mm=ring_mm, organ_mask_dirs=organ_mask_dirs),
        TumourCropd(image_size=image_size, fov_mm=fov_mm),
    ])
