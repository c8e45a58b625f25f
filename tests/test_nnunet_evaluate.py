"""Segmentation metrics (nnunet_plugins.evaluate) on hand-built masks with known answers."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_plugins.evaluate import case_class_metrics, evaluate_folder, match_lesions

SPACING_ZYX = (3.0, 1.0, 1.0)  # anisotropic like the synthetic data: 3 mm slices, 1 mm in-plane
SHAPE = (12, 32, 32)


def _write(arr: np.ndarray, path) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(tuple(reversed(SPACING_ZYX)))  # SimpleITK: (x, y, z)
    sitk.WriteImage(img, str(path))


def _empty() -> np.ndarray:
    return np.zeros(SHAPE, np.uint8)


def test_dsc_of_shifted_cubes():
    gt, pred = _empty().astype(bool), _empty().astype(bool)
    gt[2:7, 5:15, 5:15] = True
    pred[2:7, 5:15, 7:17] = True  # 2 voxels along x: overlap 5 x 10 x 8
    m = case_class_metrics(pred, gt, SPACING_ZYX, 2.0)
    assert m["dsc"] == pytest.approx(2 * 400 / 1000)
    assert (m["tp"], m["gt_voxels"], m["pred_voxels"]) == (400, 500, 500)


def test_hd95_is_in_mm_along_the_thick_axis():
    """Two aligned 10x10 sheets two slices apart: every surface point is 2 x 3 mm = 6 mm from the other."""
    gt, pred = _empty().astype(bool), _empty().astype(bool)
    gt[4, 5:15, 5:15] = True
    pred[6, 5:15, 5:15] = True
    m = case_class_metrics(pred, gt, SPACING_ZYX, 2.0)
    assert m["hd95_mm"] == pytest.approx(6.0)
    assert m["dsc"] == 0.0 and m["surface_dice"] == pytest.approx(0.0)
    assert case_class_metrics(pred, gt, SPACING_ZYX, 6.0)["surface_dice"] == pytest.approx(1.0)
    # the same masks with isotropic 1 mm voxels: 2 mm
    assert case_class_metrics(pred, gt, (1.0, 1.0, 1.0), 2.0)["hd95_mm"] == pytest.approx(2.0)


def test_surface_dice_counts_boundary_points_within_tolerance():
    """GT sheet 10x10, prediction the same sheet extended by 10 columns along x (1 mm): prediction points at
    1..10 mm from GT; within 2 mm: 2 of the 10 extra columns. NSD = (100 + 120) / (100 + 200)."""
    gt, pred = _empty().astype(bool), _empty().astype(bool)
    gt[4, 5:15, 5:15] = True
    pred[4, 5:15, 5:25] = True
    m = case_class_metrics(pred, gt, SPACING_ZYX, 2.0)
    assert m["surface_dice"] == pytest.approx(220 / 300)
    assert m["dsc"] == pytest.approx(200 / 300)
    assert m["hd95_mm"] == pytest.approx(float(np.percentile(_hd95_expected(), 95)), abs=1e-3)


def _hd95_expected() -> np.ndarray:
    """Directed distances of the extended sheet (pred -> GT: 0 for 100 points, 1..10 mm for 10 each) and
    GT -> pred (0 for all 100); MONAI takes the max of the two directed 95th percentiles."""
    return np.r_[np.zeros(100), np.repeat(np.arange(1, 11), 10)]


def test_empty_conventions():
    e = _empty().astype(bool)
    one = e.copy()
    one[3, 3:6, 3:6] = True
    both = case_class_metrics(e, e, SPACING_ZYX, 2.0)
    assert (both["dsc"], both["hd95_mm"], both["surface_dice"]) == (1.0, 0.0, 1.0)
    for pred, gt in ((one, e), (e, one)):
        m = case_class_metrics(pred, gt, SPACING_ZYX, 2.0)
        assert m["dsc"] == 0.0 and math.isnan(m["hd95_mm"]) and math.isnan(m["surface_dice"])


def test_detection_matching_at_iou_0_3_and_26_connectivity():
    gt, pred = _empty(), _empty()
    gt[2:4, 2:6, 2:6] = 1          # lesion A: 32 voxels
    gt[8:10, 20:24, 20:24] = 1     # lesion B: 32 voxels
    pred[2:4, 2:6, 2:4] = 1        # IoU with A = 16 / 32 = 0.5 -> detected
    pred[8:10, 20:24, 20:21] = 1   # IoU with B = 8 / 32 = 0.25 -> not enough
    pred[5, 28, 28] = pred[6, 29, 29] = 1  # one false positive: corner-touching voxels are one component
    assert match_lesions(pred.astype(bool), gt.astype(bool)) == (1, 2, 1)


def test_evaluate_folder_aggregates_and_writes(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    # case a: GTVp shifted cube (DSC 0.8), GTVn 100 voxels of which 50 predicted (DSC 2*50/150)
    ga, pa = _empty(), _empty()
    ga[2:7, 5:15, 5:15] = 1
    pa[2:7, 5:15, 7:17] = 1
    ga[8:10, 20:30, 20:25] = 2
    pa[8:10, 20:30, 20:22] = 2
    pa[8, 20:30, 22] = 2  # 50 predicted, all inside GT
    assert int((pa == 2).sum()) == 50
    # case b: no GTVn in GT, 20 false-positive GTVn voxels; GTVp perfect
    gb, pb = _empty(), _empty()
    gb[3:5, 3:8, 3:8] = 1
    pb[3:5, 3:8, 3:8] = 1
    pb[10, 25:30, 25:29] = 2
    for name, g, p in (("a", ga, pa), ("b", gb, pb)):
        _write(g, gt_dir / f"{name}.nii.gz")
        _write(p, pred_dir / f"{name}.nii.gz")
    s = evaluate_folder(pred_dir, gt_dir, tmp_path / "out", tolerance_mm=2.0)
    assert s["n_cases"] == 2 and s["n_gt_without_prediction"] == 0
    assert s["per_class"]["GTVp"]["mean_dsc"] == pytest.approx((0.8 + 1.0) / 2)
    assert s["per_class"]["GTVn"]["mean_dsc"] == pytest.approx((100 / 150 + 0.0) / 2)
    assert s["hecktor_aggregated_dsc_gtvn"] == pytest.approx(2 * 50 / (100 + 50 + 0 + 20))
    assert s["per_class"]["GTVn"]["mean_hd95_mm"] == pytest.approx(
        case_class_metrics(pa == 2, ga == 2, SPACING_ZYX, 2.0)["hd95_mm"])  # case b's NaN left out of the mean
    # detection: a's lesion (IoU 0.5) found; b's prediction is a false positive
    assert s["gtvn_detection"] == {"tp": 1, "fp": 1, "fn": 0, "f1": pytest.approx(2 / 3), "iou_threshold": 0.3}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_cases"] == 2
    rows = list(csv.DictReader((tmp_path / "out" / "per_case.csv").open()))
    assert len(rows) == 4 and {r["class"] for r in rows} == {"GTVp", "GTVn"}


def test_evaluate_folder_scores_predicted_subset_and_refuses_orphans(tmp_path):
    """nnU-Net's convention: a fold's validation folder against the whole labelsTr."""
    for d in ("gt", "pred"):
        (tmp_path / d).mkdir()
    one = _empty()
    one[3:5, 3:8, 3:8] = 1
    for name in ("x", "y", "z"):
        _write(one, tmp_path / "gt" / f"{name}.nii.gz")
    _write(one, tmp_path / "pred" / "y.nii.gz")
    s = evaluate_folder(tmp_path / "pred", tmp_path / "gt")
    assert s["n_cases"] == 1 and s["n_gt_without_prediction"] == 2 and s["per_class"]["GTVp"]["mean_dsc"] == 1.0
    with pytest.raises(FileNotFoundError, match="2 case"):
        evaluate_folder(tmp_path / "pred", tmp_path / "gt", require_all=True)
    _write(one, tmp_path / "pred" / "orphan.nii.gz")
    with pytest.raises(FileNotFoundError, match="orphan.nii.gz"):
        evaluate_folder(tmp_path / "pred", tmp_path / "gt")
