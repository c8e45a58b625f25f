"""MONAI dict transforms of the RFS bundle's ``preprocessing`` / ``postprocessing`` (declared inputs -> model).

The bundle's inputs (``network_data_format``) are ``image`` and ``clinical``. Two entry points feed them:

* ``monai.bundle run inference.json``: ``image`` = ``[ct_path, pet_path]``, ``clinical`` = the CSV row (dict);
  :class:`LoadImagePetCtd` reads the two files (PET on its own grid).
* MONAI Deploy's ``MonaiBundleInferenceOperator``: it strips every ``LoadImage*`` transform and passes
  ``image`` as a (2, X, Y, Z) MetaTensor (CT HU, PET SUV on the CT grid) with its affine, and ``clinical``
  as an already encoded raw canonical vector (torch.Tensor, see :func:`survival_head.rfs.export.raw_clinical_vector`).

:class:`PetCtCropResampled` accepts both and runs the same PET-guided crop + single resampling as training
(:class:`survival_head.rfs.transforms.PetGuidedCropResample`).
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from survival_head.rfs.clinical import DEFAULT_CLINICAL_SET
from survival_head.rfs.transforms import BOX_MM, LoadPetCt, PetGuidedCropResample


class LoadImagePetCtd(MapTransform):
    """``image`` = (CT path, PET path) -> (CT, PET) SimpleITK images (CT kept in its stored type).

    Named ``LoadImage*`` on purpose: MONAI Deploy's bundle operator removes it and feeds images in memory.
    """

    def __init__(self, keys: KeysCollection = ("image",), allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.ct, self.pet = LoadPetCt(as_float32=False), LoadPetCt(as_float32=True)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        pid = str(d.get("id", "?"))
        for key in self.key_iterator(d):
            ct, pet = d[key]
            d[key] = (self.ct(ct, pid), self.pet(pet, pid))
        return d


def metatensor_to_sitk(img, channel: int):
    """Channel ``channel`` of a (C, X, Y, Z) MetaTensor / array with affine -> SimpleITK image (LPS)."""
    import SimpleITK as sitk

    arr = np.asarray(img[channel].detach().cpu() if isinstance(img, torch.Tensor) else img[channel], np.float32)
    affine = np.asarray(getattr(img, "affine", np.eye(4)), float)
    space = str(getattr(img, "meta", {}).get("space", "RAS")).upper()
    if space == "RAS":
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # MONAI's RAS affine -> ITK's LPS
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    out.SetSpacing(tuple(float(s) for s in spacing))
    out.SetDirection(tuple(float(v) for v in (affine[:3, :3] / spacing).ravel()))
    out.SetOrigin(tuple(float(o) for o in affine[:3, 3]))
    return out


class PetCtCropResampled(MapTransform):
    """``image`` (CT, PET) SimpleITK pair or (2, X, Y, Z) MetaTensor -> (2, S, S, S) [CT HU, PET SUV] array
    on the PET-guided box grid; the crop geometry goes to ``crop_meta``."""

    def __init__(self, keys: KeysCollection = ("image",), image_size: int = 96, box_mm: Sequence[float] = BOX_MM,
                 upper_fraction: float = 0.4, rel_threshold: float = 0.5):
        super().__init__(keys)
        self.op = PetGuidedCropResample(image_size, box_mm, upper_fraction, rel_threshold)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if isinstance(img, tuple):
                ct, pet = img
            else:
                if tuple(img.shape)[0] != 2:
                    raise ValueError(f"patient {d.get('id', '?')}: {key} must have 2 channels (CT, PET on the "
                                     f"CT grid), got shape {tuple(img.shape)}")
                ct, pet = metatensor_to_sitk(img, 0), metatensor_to_sitk(img, 1)
            d[key], d["crop_meta"] = self.op(ct, pet, str(d.get("id", "?")))
        return d


class RawClinical(Transform):
    """CSV row (dict / Series / None) -> raw canonical clinical vector (F,) float32 tensor; a tensor or array
    of length F passes through (MONAI Deploy feeds it encoded)."""

    def __init__(self, clinical_set: str = DEFAULT_CLINICAL_SET):
        from survival_head.rfs.clinical import n_clinical_for

        self.clinical_set = clinical_set
        self.width = n_clinical_for(clinical_set)

    def __call__(self, row) -> torch.Tensor:
        from survival_head.rfs.export import raw_clinical_vector

        if isinstance(row, (torch.Tensor, np.ndarray)):
            out = torch.as_tensor(np.asarray(row.detach().cpu() if isinstance(row, torch.Tensor) else row),
                                  dtype=torch.float32).reshape(-1)
        else:
            out = torch.from_numpy(raw_clinical_vector(row, self.clinical_set))
        if out.numel() != self.width:
            raise ValueError(f"clinical vector has {out.numel()} values, clinical_set {self.clinical_set!r} "
                             f"needs {self.width}")
        return out


class RawClinicald(MapTransform):
    """Dict wrapper of :class:`RawClinical`."""

    def __init__(self, keys: KeysCollection = ("clinical",), clinical_set: str = DEFAULT_CLINICAL_SET):
        super().__init__(keys)
        self.op = RawClinical(clinical_set)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class RiskScored(MapTransform):
    """Model output ``pred`` (1,) or (B, 1) -> float64 risk tensor of the same leading shape, finite-checked."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            v = torch.as_tensor(d[key]).detach().double().reshape(-1)
            if not torch.isfinite(v).all():
                raise ValueError(f"patient {d.get('id', '?')}: non-finite risk {v.tolist()}")
            d[key] = v
        return d
