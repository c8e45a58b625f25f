"""PET-guided crop + one-resampling transforms against the reference path; fallback warning."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from survival_head.rfs.reference import naive_preprocess
from survival_head.rfs.transforms import (CropRegionWarning, PetGuidedCropResample, find_crop_centre,
                                          rfs_preprocessing)


def _paths(cohort, pid):
    return {"id": pid, "ct": str(cohort / pid / f"{pid}__CT.nii.gz"), "pet": str(cohort / pid / f"{pid}__PT.nii.gz")}


def test_output_shape_ranges_and_brain_centre(tiny_cohort):
    pid = sorted(p.name for p in tiny_cohort.iterdir() if p.is_dir())[0]
    d = rfs_preprocessing(24)(_paths(tiny_cohort, pid))
    x = d["image"]
    assert x.shape == (2, 24, 24, 24) and x.dtype == torch.float32
    assert float(x[0].min()) >= 0.0 and float(x[0].max()) <= 1.0
    assert abs(float(x[1].mean())) < 1e-4 and abs(float(x[1].std()) - 1) < 1e-2
    assert d["crop_meta"]["crop_region_found"]
    assert d["crop_meta"]["crop_centre_mm"][2] > 30  # brain (z ~ 78 mm), not the neck tumour (z ~ 0)


def test_one_resampling_matches_naive_path(tiny_cohort):
    pid = sorted(p.name for p in tiny_cohort.iterdir() if p.is_dir())[1]
    p = _paths(tiny_cohort, pid)
    ct, pet = (sitk.ReadImage(p[k], sitk.sitkFloat32) for k in ("ct", "pet"))
    fast = rfs_preprocessing(32)(p)["image"]
    slow = naive_preprocess(ct, pet, 32)
    for c in range(2):
        r = np.corrcoef(fast[c].ravel().numpy(), slow[c].ravel().numpy())[0, 1]
        assert r > 0.95, (c, r)


def test_no_uptake_region_warns_and_falls_back(tiny_cohort):
    pid = sorted(p.name for p in tiny_cohort.iterdir() if p.is_dir())[0]
    pet = sitk.ReadImage(str(tiny_cohort / pid / f"{pid}__PT.nii.gz"), sitk.sitkFloat32) * 0.0
    with pytest.warns(CropRegionWarning, match=pid):
        centre, found = find_crop_centre(pet, patient_id=pid)
    assert not found and np.isfinite(centre).all()
    ct = sitk.ReadImage(str(tiny_cohort / pid / f"{pid}__CT.nii.gz"), sitk.sitkFloat32)
    with pytest.warns(CropRegionWarning):
        x, meta = PetGuidedCropResample(16)(ct, pet, pid)
    assert x.shape == (2, 16, 16, 16) and not meta["crop_region_found"]


def test_ct_read_in_stored_type_gives_the_float32_result(tiny_cohort):
    from survival_head.rfs.transforms import LoadPetCtd

    pid = sorted(p.name for p in tiny_cohort.iterdir() if p.is_dir())[2]
    p = _paths(tiny_cohort, pid)
    d = LoadPetCtd(("ct", "pet"))(p)
    assert d["ct"].GetPixelID() == sitk.sitkInt16 and d["pet"].GetPixelID() == sitk.sitkFloat32
    f32 = {k: sitk.ReadImage(p[k], sitk.sitkFloat32) for k in ("ct", "pet")}
    native, _ = PetGuidedCropResample(32)(d["ct"], d["pet"], pid)
    ref, _ = PetGuidedCropResample(32)(f32["ct"], f32["pet"], pid)
    assert np.allclose(native, ref, atol=1e-3), float(np.abs(native - ref).max())
