"""Segmentation metrics for HECKTOR: per-case DSC / HD95 / surface Dice, aggregated DSC, GTVn detection F1.

Empty-mask convention (per case and class): both empty -> DSC 1, HD95 0 mm, surface Dice 1; exactly one
empty -> DSC 0, HD95 and surface Dice undefined (NaN, left out of their means). The HECKTOR aggregated
DSC 2 sum(TP) / sum(|GT| + |Pred|) over all patients needs no convention (NaN only if all are empty).
Detection: connected components (26-connectivity); a GT lesion is detected by a predicted one with
IoU > 0.3 (one-to-one, greedy by IoU); F1 = 2TP / (2TP + FP + FN) pooled over patients (1 if there is
nothing to detect and nothing predicted).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from hnc_core import schema
from hnc_core.failures import failure

CLASSES = {value: name for value, name in schema.LABELS.items() if value}  # foreground classes


MIN_PRED_COVERAGE = 0.99  # a prediction on another grid must cover this fraction of the GT's physical box


def _read(path: Path, allowed=(0, 1, 2)):
    """Label map through the strict reader ``validate`` uses (refuses truncated, empty, NaN, float maps)."""
    from hnc_core.cohort import read_image_checked

    return read_image_checked(path, label=True, allowed=allowed)


def _on_gt_grid(pred, gt, name: str) -> tuple[np.ndarray, bool]:
    """Prediction voxels (z, y, x) on the ground truth's grid: as is when the grids match, else resampled
    (nearest neighbour, physical space) when it covers the ground truth; otherwise ``ValueError``."""
    import SimpleITK as sitk

    from hnc_core.cohort import grid_mismatch, overlap_fraction

    if not grid_mismatch(gt, pred):
        return sitk.GetArrayFromImage(pred), False
    cover = overlap_fraction(gt, pred)
    if cover < MIN_PRED_COVERAGE:
        raise ValueError(f"case {name}: prediction is on another grid ({grid_mismatch(gt, pred)}) and covers only "
                         f"{100 * cover:.1f}% of the ground truth's physical extent; predict on the GT's image")
    res = sitk.Resample(pred, gt, sitk.Transform(), sitk.sitkNearestNeighbor, 0, pred.GetPixelID())
    return sitk.GetArrayFromImage(res), True


def surface_metrics(pred: np.ndarray, gt: np.ndarray, spacing, tolerance_mm: float) -> tuple[float, float]:
    """HD95 (mm) and surface Dice at ``tolerance_mm`` of two non-empty binary masks (MONAI)."""
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    p = torch.from_numpy(pred.astype(np.float32))[None, None]
    g = torch.from_numpy(gt.astype(np.float32))[None, None]
    hd = compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=list(spacing))
    nsd = compute_surface_dice(p, g, [tolerance_mm], include_background=True, spacing=list(spacing))
    return float(hd.item()), float(nsd.item())


def case_class_metrics(pred: np.ndarray, gt: np.ndarray, spacing, tolerance_mm: float) -> dict:
    """DSC, HD95, surface Dice, voxel counts for one binary class in one case (empty convention above)."""
    tp = int(np.logical_and(pred, gt).sum())
    n_p, n_g = int(pred.sum()), int(gt.sum())
    if n_p == 0 and n_g == 0:
        dsc, hd, nsd = 1.0, 0.0, 1.0
    elif n_p == 0 or n_g == 0:
        dsc, hd, nsd = 0.0, math.nan, math.nan
    else:
        dsc = 2 * tp / (n_p + n_g)
        hd, nsd = surface_metrics(pred, gt, spacing, tolerance_mm)
    return {"dsc": dsc, "hd95_mm": hd, "surface_dice": nsd, "tp": tp, "gt_voxels": n_g, "pred_voxels": n_p}


def match_lesions(pred: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.3) -> tuple[int, int, int]:
    """(TP, FP, FN) of connected-component lesions, one-to-one matching at IoU > threshold."""
    from scipy import ndimage

    structure = np.ones((3,) * gt.ndim, dtype=bool)
    lg, ng = ndimage.label(gt, structure)
    lp, n_pred = ndimage.label(pred, structure)
    pairs = []
    for i in range(1, ng + 1):
        gi = lg == i
        for j in np.unique(lp[gi]):
            if j == 0:
                continue
            pj = lp == j
            inter = np.logical_and(gi, pj).sum()
            pairs.append((inter / np.logical_or(gi, pj).sum(), i, j))
    used_g, used_p = set(), set()
    for iou, i, j in sorted(pairs, reverse=True):
        if iou > iou_threshold and i not in used_g and j not in used_p:
            used_g.add(i)
            used_p.add(j)
    tp = len(used_g)
    return tp, n_pred - tp, ng - tp


def evaluate_folder(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                    tolerance_mm: float = 2.0, classes: dict[int, str] | None = None, progress: bool = False,
                    require_all: bool = False, missing_as_empty: bool = False) -> dict:
    """Evaluate every ``PRED_DIR/*.nii.gz`` against ``GT_DIR`` (same file names; nnU-Net's convention, so a
    fold's ``validation`` folder can be scored against the whole ``labelsTr``). A prediction without ground
    truth is an error; ground truth without prediction is scored as an empty prediction with
    ``missing_as_empty`` (the challenge's rule; ``hnc-petct seg-evaluate``'s default), an error with ``require_all``,
    and otherwise not scored; it is counted either way (``n_gt_without_prediction``). Writes ``per_case.csv`` and ``summary.json`` to ``out_dir`` (default:
    PRED_DIR) and returns the summary dict."""
    import logging

    import pandas as pd
    from tqdm.auto import tqdm

    from hnc_core.io import write_csv_atomic, write_json_atomic

    from hnc_core.cohort import ImageReadError
    from hnc_core.guards import OutputPathError, check_output_dir, check_output_file

    classes = classes or CLASSES
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {gt_dir}")
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_dir}")
    if pred_dir.resolve() == gt_dir.resolve():
        raise OutputPathError(f"PRED_DIR and GT_DIR are the same folder ({gt_dir}): that scores the ground truth "
                              "against itself and would write the tables into the ground-truth folder")
    out = Path(out_dir) if out_dir else pred_dir
    check_output_dir(out, protected_dirs=[gt_dir], what="output folder (--out)")
    for name in ("per_case.csv", "summary.json"):
        check_output_file(out / name, what="output file")
    gt_names = {g.name for g in gt_dir.glob("*.nii.gz")}
    if not gt_names:
        raise FileNotFoundError(f"no *.nii.gz ground-truth files in {gt_dir}")
    pred_names = {p.name for p in pred_dir.glob("*.nii.gz")}
    if not pred_names:
        raise FileNotFoundError(f"no *.nii.gz predictions in {pred_dir}")
    no_gt = sorted(pred_names - gt_names)
    if no_gt:
        raise FileNotFoundError(f"{len(no_gt)} prediction(s) have no ground truth in {gt_dir}: {no_gt[:5]}")
    missing = sorted(gt_names - pred_names)
    if missing and require_all:
        raise FileNotFoundError(f"{len(missing)} case(s) have no prediction in {pred_dir}: {missing[:5]}")
    log = logging.getLogger(__name__)
    if missing:
        log.info("%d ground-truth case(s) without prediction are %s", len(missing),
                 "scored as empty predictions" if missing_as_empty else "not scored")
    allowed = (0, *classes)
    gts = [gt_dir / n for n in sorted(gt_names if missing_as_empty else pred_names)]
    rows, det, errors, resampled = [], {"tp": 0, "fp": 0, "fn": 0}, [], []
    for g in tqdm(gts, desc="evaluating", unit="case", disable=not progress):
        case = g.name[: -len(".nii.gz")]
        try:
            gt_img = _read(g, allowed)
            if g.name in pred_names:
                pred, moved = _on_gt_grid(_read(pred_dir / g.name, allowed), gt_img, g.name)
            else:  # counted as an empty prediction (the challenge's rule)
                import SimpleITK as sitk

                pred, moved = np.zeros_like(sitk.GetArrayFromImage(gt_img)), False
        except (ImageReadError, ValueError) as exc:
            errors.append({**failure(case, getattr(exc, "path", None) or pred_dir / g.name, str(exc)),
                           "case": case})
            log.error("case %s not scored: %s", case, exc)
            continue
        if moved:
            resampled.append(case)
            log.warning("case %s: prediction resampled onto the ground truth's grid (physical space)", case)
        import SimpleITK as sitk

        gt, spacing = sitk.GetArrayFromImage(gt_img), tuple(reversed(gt_img.GetSpacing()))
        for c, cname in classes.items():
            rows.append({"case": case, "class": cname, "prediction_missing": g.name not in pred_names,
                         **case_class_metrics(pred == c, gt == c, spacing, tolerance_mm)})
        if 2 in classes:
            tp, fp, fn = match_lesions(pred == 2, gt == 2)
            det["tp"] += tp
            det["fp"] += fp
            det["fn"] += fn
    if not rows:
        raise ValueError(f"no case could be scored: " + "; ".join(e["error"] for e in errors[:5]))
    df = pd.DataFrame(rows)
    summary = {**_summarise(df, det, tolerance_mm, classes), "n_gt_without_prediction": len(missing),
               "missing_predictions": "scored as empty" if missing_as_empty else "not scored",
               "resampled_cases": resampled, "errors": errors}
    write_csv_atomic(df, out / "per_case.csv", float_format="%.6g")
    write_json_atomic(out / "summary.json", summary)
    return summary


def _summarise(df, det: dict, tolerance_mm: float, classes: dict[int, str]) -> dict:
    per_class = {}
    for cname in classes.values():
        d = df[df["class"] == cname]
        denom = int(d["gt_voxels"].sum() + d["pred_voxels"].sum())
        per_class[cname] = {
            "aggregated_dsc": (2 * int(d["tp"].sum()) / denom) if denom else math.nan,
            "mean_dsc": float(d["dsc"].mean()), "mean_hd95_mm": float(d["hd95_mm"].mean()),
            "mean_surface_dice": float(d["surface_dice"].mean()), "n_cases": int(len(d))}
    tp, fp, fn = det["tp"], det["fp"], det["fn"]
    detection = {**det, "f1": (2 * tp / (2 * tp + fp + fn)) if (tp + fp + fn) else 1.0, "iou_threshold": 0.3}
    return {"n_cases": int(df["case"].nunique()), "tolerance_mm": tolerance_mm, "per_class": per_class,
            "hecktor_aggregated_dsc_gtvn": per_class.get("GTVn", {}).get("aggregated_dsc"),
            "gtvn_detection": detection}
