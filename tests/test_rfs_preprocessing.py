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
    assert d["crop_meta"]["crop_anchor_mm"][2] > 30  # brain (z ~ 78 mm), not the neck tumour (z ~ 0)
    assert d["crop_meta"]["crop_centre_mm"][2] < d["crop_meta"]["crop_anchor_mm"][2] - 60  # box hangs below


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


@pytest.mark.slow
def test_crop_box_holds_every_low_neck_gtv_voxel(tmp_path):
    """Full-size (512 x 512 x 200) patients with laryngeal/hypopharyngeal primaries and level III/IV nodes
    160-210 mm below the brain: the box hung from the brain anchor holds every GTV voxel. (The brain-centred
    box of the old placement held 6 % and 39 % of these two patients' GTV voxels.)"""
    from hnc_core.synth import generate_cohort
    from survival_head.rfs.transforms import BOX_MM, SUPERIOR_MARGIN_MM

    generate_cohort(tmp_path, n=2, seed=5, size="full", progress=False, primary_site="low_neck")
    labels_seen = set()
    for pid in sorted(p.name for p in tmp_path.iterdir() if p.is_dir()):
        p = _paths(tmp_path, pid)
        ct, pet = sitk.ReadImage(p["ct"]), sitk.ReadImage(p["pet"], sitk.sitkFloat32)
        _, meta = PetGuidedCropResample(16)(ct, pet, pid)
        assert meta["crop_region_found"]
        anchor, centre = np.array(meta["crop_anchor_mm"]), np.array(meta["crop_centre_mm"])
        assert centre[2] + BOX_MM[2] / 2 == pytest.approx(anchor[2] + SUPERIOR_MARGIN_MM)  # top above the brain
        lab = sitk.ReadImage(str(tmp_path / pid / f"{pid}.nii.gz"))
        idx = np.argwhere(sitk.GetArrayViewFromImage(lab) > 0)[:, ::-1]  # (x, y, z) voxel indices
        labels_seen |= set(np.unique(sitk.GetArrayViewFromImage(lab)).tolist())
        origin, direction = np.array(lab.GetOrigin()), np.array(lab.GetDirection()).reshape(3, 3)
        pts = origin + (idx * np.array(lab.GetSpacing())) @ direction.T
        lo = np.array(meta["origin_mm"]) - np.array(meta["spacing_mm"]) / 2
        hi = lo + np.array(BOX_MM)
        assert ((pts >= lo) & (pts <= hi)).all(), (pid, pts[:, 2].min(), lo[2])
    assert labels_seen == {0, 1, 2}  # primaries and nodes were both checked


def test_low_neck_site_needs_the_full_grid(tmp_path):
    from hnc_core.synth import generate_cohort

    with pytest.raises(ValueError, match="full"):
        generate_cohort(tmp_path, n=1, size="small", progress=False, primary_site="low_neck")
