"""Reference ("naive") preprocessing: PET onto the CT grid, whole-volume 1 mm isotropic resampling,
then crop the 200 x 200 x 310 mm box and resize to S^3. Used only to check and benchmark the
one-resampling path of :mod:`survival_head.rfs.transforms` (same result, far less time/memory)."""

from __future__ import annotations

import numpy as np
import torch

from survival_head.rfs.transforms import BOX_MM, CT_RANGE_HU, NormalizePetCt, crop_box_centre, find_crop_centre


def naive_preprocess(ct, pet, image_size: int = 96, box_mm=BOX_MM) -> torch.Tensor:
    """SimpleITK CT/PET images -> (2, S, S, S) tensor via full 1 mm resampling, crop + pad, resize."""
    import SimpleITK as sitk
    import torch.nn.functional as F

    pet_on_ct = sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    size_mm = np.array(ct.GetSize()) * np.array(ct.GetSpacing())
    ref = sitk.Image([int(v) for v in np.ceil(size_mm)], sitk.sitkFloat32)
    ref.SetSpacing((1.0, 1.0, 1.0))
    ref.SetOrigin(ct.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, -0.5)))
    ref.SetOrigin(tuple(np.array(ref.GetOrigin()) + 0.5))
    ct1 = sitk.GetArrayFromImage(sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, CT_RANGE_HU[0],
                                               sitk.sitkFloat32))
    pet1 = sitk.GetArrayFromImage(sitk.Resample(pet_on_ct, ref, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                sitk.sitkFloat32))
    anchor, _ = find_crop_centre(pet)
    centre = crop_box_centre(anchor, box_mm)
    c_idx = np.array(ref.TransformPhysicalPointToContinuousIndex(tuple(map(float, centre))))[::-1]  # z, y, x
    half = np.array(box_mm)[::-1] / 2
    lo = np.round(c_idx - half).astype(int)
    out = []
    for arr, pad in ((ct1, CT_RANGE_HU[0]), (pet1, 0.0)):
        box = np.full(np.round(2 * half).astype(int), pad, np.float32)
        src_lo, src_hi = np.maximum(lo, 0), np.minimum(lo + box.shape, arr.shape)
        if (src_hi > src_lo).all():
            dst = src_lo - lo
            box[tuple(slice(a, a + (b - c)) for a, b, c in zip(dst, src_hi, src_lo))] = \
                arr[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
        out.append(box)
    x = torch.from_numpy(np.stack(out))[None]
    x = F.interpolate(x, size=(image_size,) * 3, mode="area")[0]  # area = anti-aliased down-sampling
    return NormalizePetCt()(x)
