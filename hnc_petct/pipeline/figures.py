"""Overlay PNGs for the report: CT (window -200..300 HU) + PET (SUV, hot) + label contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hnc_core.io import atomic_path


def _on_ct_grid(path, ct, interpolator=None):
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    interp = interpolator if interpolator is not None else sitk.sitkLinear
    return sitk.GetArrayFromImage(sitk.Resample(img, ct, sitk.Transform(), interp, 0.0))


def overlay_png(ct_path: Path, pet_path: Path, label_path: Path | None, pred_path: Path | None,
                out_png: Path, title: str = "") -> Path:
    """Write one axial slice through the largest tumour cross-section, with GT (solid) and prediction
    (dashed) contours of GTVp and GTVn. Returns ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(ct_path))
    ct_arr = sitk.GetArrayFromImage(ct).astype(np.float32)
    pet = _on_ct_grid(pet_path, ct)
    gt = _on_ct_grid(label_path, ct, sitk.sitkNearestNeighbor) if label_path else None
    pred = _on_ct_grid(pred_path, ct, sitk.sitkNearestNeighbor) if pred_path else None
    ref = gt if gt is not None and gt.any() else pred
    z = int(np.argmax((ref > 0).sum(axis=(1, 2)))) if ref is not None and ref.any() else ct_arr.shape[0] // 2

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    for ax, show_pet in zip(axes, (False, True)):
        ax.imshow(ct_arr[z], cmap="gray", vmin=-200, vmax=300)
        if show_pet:
            ax.imshow(np.ma.masked_less(pet[z], 1.5), cmap="hot", alpha=0.6, vmin=0, vmax=max(float(pet.max()), 2))
        for arr, style in ((gt, "solid"), (pred, "dashed")):
            if arr is None:
                continue
            for lab, colour in ((1, "lime"), (2, "cyan")):
                m = arr[z] == lab
                if m.any():
                    ax.contour(m, levels=[0.5], colors=colour, linestyles=style, linewidths=1.2)
        ax.set_axis_off()
    axes[0].set_title("CT; GT solid, HecMamba dashed", fontsize=9)
    axes[1].set_title("PET (SUV) on CT", fontsize=9)
    fig.suptitle(f"{title}  (slice {z}; green GTVp, cyan GTVn)", fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return Path(out_png)
