"""DM regions, transforms, networks and fold-safe cross-validation (the leak test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from survival_head.dm.regions import RegionError, body_mask, mask_file, peritumoral_ring


def shared_cohort(factory):
    from hnc_core.synth import generate_cohort

    root = factory.getbasetemp() / "dm_shared_cohort"
    if not (root / "ground_truth.csv").is_file():
        generate_cohort(root, n=16, seed=3, progress=False)
    return root


def test_ring_respects_width_in_mm_and_body():
    from scipy import ndimage

    tumour = np.zeros((20, 40, 40), bool)
    tumour[8:12, 15:25, 15:25] = True
    body = np.ones_like(tumour)
    body[:, :, 30:] = False  # the body ends 5 voxels right of the tumour
    spacing = (1.0, 1.0, 3.0)  # (x, y, z) mm
    ring = peritumoral_ring(tumour, body, spacing, 6.0)
    dist = ndimage.distance_transform_edt(~tumour, sampling=(3.0, 1.0, 1.0))
    assert ring.any() and not (ring & tumour).any() and not (ring & ~body).any()
    assert dist[ring].max() <= 6.0
    assert ring[10, 20, 10]  # 5 mm left of the tumour in x
    assert not ring[4, 20, 20]  # 6 mm below in z (two 3-mm slices) is in, 12 mm (4 slices) is out
    assert ring[6, 20, 20]


def test_body_mask_fills_the_airway():
    ct = np.full((6, 50, 50), -1000.0)
    yy, xx = np.mgrid[:50, :50]
    ct[:, (yy - 25) ** 2 + (xx - 25) ** 2 < 400] = 40.0
    ct[:, (yy - 25) ** 2 + (xx - 25) ** 2 < 16] = -950.0  # airway
    body = body_mask(ct)
    assert body[:, 25, 25].all()
    assert not body[:, 2, 2].any()


def test_mask_dir_missing_file_names_patient(tmp_path):
    with pytest.raises(RegionError, match="CHUM-009"):
        mask_file("CHUM-009", None, tmp_path)


def test_crop_channels_and_size_check(tmp_path_factory):
    from survival_head.dm.transforms import TumourCrop, image_transforms

    root = shared_cohort(tmp_path_factory)
    pid = "CHUM-001" if (root / "CHUM-001").is_dir() else sorted(p.name for p in root.iterdir() if p.is_dir())[0]
    d = image_transforms(32)({"PatientID": pid, "ct": str(root / pid / f"{pid}__CT.nii.gz"),
                              "mask": str(root / pid / f"{pid}.nii.gz")})
    img = d["image"]
    assert img.shape == (3, 32, 32, 32) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1
    assert img[1].sum() > 0 and img[2].sum() > 0
    assert (img[1] * img[2]).sum() < 0.2 * img[1].sum()  # tumour and ring barely overlap (partial volume only)
    with pytest.raises(ValueError, match="multiple of 32"):
        TumourCrop(image_size=48)


def test_organ_masks_become_extra_channels(tmp_path_factory, tmp_path):
    import shutil

    from survival_head.dm.transforms import image_transforms

    root = shared_cohort(tmp_path_factory)
    pid = sorted(p.name for p in root.iterdir() if p.is_dir())[0]
    shutil.copy(root / pid / f"{pid}.nii.gz", tmp_path / f"{pid}.nii.gz")  # any on-grid mask will do
    d = image_transforms(32, organ_mask_dirs={"nodes_as_organ": str(tmp_path)})(
        {"PatientID": pid, "ct": str(root / pid / f"{pid}__CT.nii.gz"), "mask": str(root / pid / f"{pid}.nii.gz")})
    assert d["image"].shape == (4, 32, 32, 32)
    assert torch.allclose(d["image"][3], d["image"][1])  # the copied label equals the GTVp+GTVn channel


@pytest.mark.parametrize("backbone", ["swin", "resnet"])
def test_fusion_network_shapes(backbone):
    from survival_head.dm.network import DMFusionNet

    net = DMFusionNet(3, 36, 10, backbone=backbone, window_size=4).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 32, 32, 32), torch.rand(2, 36), torch.rand(2, 10))
    assert out.shape == (2,)
    only = DMFusionNet(3, 36, 10, use_image=False, use_clinical=False)
    assert not hasattr(only, "encoder") and only.head[0].in_features == 36


def test_selection_and_encoding_are_fitted_inside_folds(tmp_path_factory):
    """Leak test: every fold's selector/encoder statistics equal those of its training rows only."""
    from survival_head.dm.data import load_dm_data
    from survival_head.dm.training import DMConfig, cross_validate

    root = shared_cohort(tmp_path_factory)
    cache = tmp_path_factory.getbasetemp() / "dm_shared_fast_cache"
    data = load_dm_data(root, cache, image_size=32, radiomics_params="fast", workers=2, progress=False)
    cfg = DMConfig(image_size=32, n_folds=3, head_epochs=20, k=6)
    cv = cross_validate(data, cfg, [("radiomics", "clinical")], progress=False)
    tested = sorted(i for f in cv["folds"] for i in f["test_ids"])
    assert tested == sorted(data.ids)
    for f in cv["folds"]:
        assert not set(f["train_ids"]) & set(f["test_ids"])
        sel, enc = f["selector"], f["clinical_encoder"]
        raw_tr = data.radiomics.loc[f["train_ids"], sel.selected_].to_numpy(float)
        raw_all = data.radiomics[sel.selected_].to_numpy(float)
        assert np.allclose(sel.means_, raw_tr.mean(0))
        assert not np.allclose(sel.means_, raw_all.mean(0))
        age_tr = data.clinical.loc[f["train_ids"], "Age"].astype(float)
        assert enc.medians_["Age"] == pytest.approx(float(np.nanmedian(age_tr)))
    p = cv["oof"]["radiomics+clinical"]
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


def test_head_epochs_are_chosen_on_an_inner_split_of_the_training_rows():
    from survival_head.dm.network import DMFusionNet
    from survival_head.dm.training import DMConfig, head_epochs_by_inner_split, train_head

    g = torch.Generator().manual_seed(0)
    n = 80
    y = (torch.rand(n, generator=g) < 0.3).numpy().astype(int)
    rad = torch.randn(n, 6, generator=g) + torch.as_tensor(y, dtype=torch.float32)[:, None] * 0.8
    cfg = DMConfig(head_epochs=40, seed=0)
    torch.manual_seed(0)
    net = DMFusionNet(n_radiomics=6, n_clinical=0, use_image=False, use_clinical=False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    e = head_epochs_by_inner_split(net, None, rad, None, y, cfg)
    assert 1 <= e <= 40
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # only a copy was trained
    assert head_epochs_by_inner_split(net, None, rad, None, y, DMConfig(head_epochs=40, head_inner_val=0.0)) == 40
    assert train_head(net, None, rad, None, y, cfg) == e  # the final fit uses the chosen count
    assert not all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_one_cv_serves_training_and_analysis(tmp_path_factory, tmp_path):
    """The main job runs the DM cross-validation once: fitting extra modality subsets in the same CV leaves the
    trained set's out-of-fold predictions unchanged, and the analysis is written from that one CV."""
    import json

    from survival_head.dm.analysis import write_analysis
    from survival_head.dm.data import load_dm_data
    from survival_head.dm.training import DMConfig, cross_validate

    root = shared_cohort(tmp_path_factory)
    cache = tmp_path_factory.getbasetemp() / "dm_shared_fast_cache"
    data = load_dm_data(root, cache, image_size=32, radiomics_params="fast", workers=2, progress=False)
    cfg = DMConfig(image_size=32, n_folds=3, head_epochs=20, k=6)
    trained = ("radiomics", "clinical")
    alone = cross_validate(data, cfg, [trained], progress=False)
    both = cross_validate(data, cfg, [trained, ("clinical",), ("radiomics",)], progress=False)
    assert np.allclose(alone["oof"]["radiomics+clinical"], both["oof"]["radiomics+clinical"])
    res = write_analysis(root, data, both, cfg, tmp_path)
    assert list(res["ablation"])[:3] == ["radiomics", "clinical", "radiomics+clinical"]  # ALL_SETS order
    assert list(res["ablation"])[3:] == ["baseline:logistic_all_radiomics"]  # the baseline row comes last
    assert json.loads((tmp_path / "analysis.json").read_text())["subgroup_model"] == "radiomics+clinical"
    d = res["fusion_minus"]  # paired AUC difference of the fused row against every other row
    assert set(d) == {"radiomics", "clinical", "baseline:logistic_all_radiomics"}
    full = res["ablation"]["radiomics+clinical"]["auc"]
    assert d["clinical"]["estimate"] == pytest.approx(full - res["ablation"]["clinical"]["auc"])
def test_ring_excludes_airway_air():
    """The body mask fills the airway; the ring must still hold tissue only (failed before: ring had air)."""
    from survival_head.dm.regions import body_mask

    ct = np.full((10, 60, 60), -1000.0, np.float32)
    yy, xx = np.mgrid[:60, :60]
    ct[:, (yy - 30) ** 2 + (xx - 30) ** 2 <= 25 ** 2] = 40.0
    airway = (yy - 30) ** 2 + (xx - 22) ** 2 <= 4 ** 2
    ct[:, airway] = -950.0  # air column next to the tumour, closed in-plane: filled into the body
    tumour = np.zeros(ct.shape, bool)
    tumour[3:7, 26:34, 28:36] = True
    body = body_mask(ct)
    assert body[5][airway].all()  # the filled body does contain the airway
    ring = peritumoral_ring(tumour, body, (1.0, 1.0, 3.0), 8.0, ct=ct)
    assert ring.any() and (ct[ring] > -500).all()
    assert (peritumoral_ring(tumour, body, (1.0, 1.0, 3.0), 8.0) & (ct < -500)).any()  # without ct: air in ring


def test_head_epoch_smoothing_has_no_edge_bias():
    """A validation curve that peaks at epoch 1 and decays picks epoch 1 (zero-padded smoothing picked 3)."""
    from survival_head.dm.training import best_smoothed_epoch, moving_average

    aucs = np.linspace(0.80, 0.60, 40)
    assert best_smoothed_epoch(aucs) == 1
    zero_padded = int(np.argmax(np.convolve(aucs, np.ones(5) / 5, mode="same"))) + 1
    assert zero_padded == 3  # the old rule
    assert np.allclose(moving_average(np.full(7, 0.7)), 0.7)  # constant stays constant at the edges


def test_paired_auc_difference_ci():
    """Paired bootstrap AUC difference: exactly 0 for identical predictions; an informative prediction beats
    noise with a CI above 0, and the reversed comparison is its mirror."""
    from survival_head.dm.metrics import _auc, auc_difference_ci

    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.25).astype(int)
    good, noise = y + rng.normal(0, 0.8, 200), rng.normal(size=200)
    d = auc_difference_ci(y, good, noise, n_boot=300, seed=1)
    assert d["estimate"] == pytest.approx(_auc(y, good) - _auc(y, noise))
    assert 0 < d["ci_low"] <= d["estimate"] <= d["ci_high"]
    r = auc_difference_ci(y, noise, good, n_boot=300, seed=1)
    assert r["ci_high"] == pytest.approx(-d["ci_low"]) and r["estimate"] == pytest.approx(-d["estimate"])
    same = auc_difference_ci(y, good, good, n_boot=50)
    assert same["estimate"] == same["ci_low"] == same["ci_high"] == 0
