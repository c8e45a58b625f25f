"""Voxel geometry of a sorted DICOM series and PET-to-CT resampling.

Affines here map an index in the array order MONAI Deploy's ``Image`` uses, ``(k, j, i)`` =
(slice, row, column) = (D, H, W), to DICOM patient coordinates (LPS, mm).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import StudyInputError


def slice_normal(ds) -> np.ndarray:
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def sort_datasets(datasets: Sequence) -> list:
    """Datasets sorted by position along the slice normal (as MONAI Deploy's volume operator sorts)."""
    n = slice_normal(datasets[0])
    return sorted(datasets, key=lambda ds: float(np.dot(n, [float(v) for v in ds.ImagePositionPatient])))


def affine_dhw(datasets: Sequence) -> np.ndarray:
    """4x4 affine, index (k, j, i, 1) -> LPS mm, of sorted single-frame datasets."""
    first, last = datasets[0], datasets[-1]
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    p1 = np.asarray([float(v) for v in first.ImagePositionPatient])
    pn = np.asarray([float(v) for v in last.ImagePositionPatient])
    n = len(datasets)
    if n > 1:
        step = (pn - p1) / (n - 1)
    else:
        step = slice_normal(first) * float(first.get("SliceThickness", 1.0) or 1.0)
    a = np.eye(4)
    a[:3, 0] = step                        # k: slice
    a[:3, 1] = iop[3:] * row_spacing       # j: row index moves along the column direction cosine
    a[:3, 2] = iop[:3] * col_spacing       # i: column index moves along the row direction cosine
    a[:3, 3] = p1
    return a


def spacing_dhw(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))


def ras_affine_whd(affine: np.ndarray) -> np.ndarray:
    """The same grid as a NIfTI-style affine: index (i, j, k) -> RAS mm (for MONAI MetaTensors)."""
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0  # (i, j, k) -> (k, j, i)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine @ perm


def resample_to(moving: np.ndarray, moving_affine: np.ndarray, fixed_shape: Sequence[int],
                fixed_affine: np.ndarray, order: int = 1) -> tuple[np.ndarray, float]:
    """Resample ``moving`` (D, H, W) onto the fixed grid; return (array float32, fraction of fixed voxels inside).

    Linear interpolation as ITK/SimpleITK resample: a fixed voxel whose centre maps within half a voxel
    of the moving image's edge takes the nearest edge value, further out it is 0.
    """
    from scipy import ndimage

    m = np.linalg.inv(moving_affine) @ fixed_affine
    out = ndimage.affine_transform(np.asarray(moving, np.float32), m[:3, :3], offset=m[:3, 3],
                                   output_shape=tuple(int(s) for s in fixed_shape), order=order, mode="nearest")
    grids = np.meshgrid(*(np.arange(s) for s in fixed_shape), indexing="ij", sparse=True)
    inside = np.ones(tuple(int(s) for s in fixed_shape), bool)
    for ax in range(3):
        c = sum(m[ax, d] * grids[d] for d in range(3)) + m[ax, 3]
        inside &= (c >= -0.5) & (c <= moving.shape[ax] - 0.5)
    out[~inside] = 0.0
    return out, float(inside.mean())


def extent_z(affine: np.ndarray, shape: Sequence[int]) -> tuple[float, float]:
    """Range of the slice positions along patient z (mm)."""
    zs = [affine[2, 0] * k + affine[2, 3] for k in (0, shape[0] - 1)]
    return min(zs), max(zs)


def check_overlap(fraction: float, ct_series, pet_series, ct_z, pet_z, min_fraction: float = 0.0) -> None:
    """Raise when the PET covers none (or less than ``min_fraction``) of the CT grid."""
    if fraction <= min_fraction:
        raise StudyInputError(
            f"does not overlap the CT series {ct_series.SeriesInstanceUID}: the PET covers {fraction:.0%} of the CT "
            f"volume (CT z {ct_z[0]:.1f}..{ct_z[1]:.1f} mm, PET z {pet_z[0]:.1f}..{pet_z[1]:.1f} mm); are they "
            "from the same examination?", pet_series)
