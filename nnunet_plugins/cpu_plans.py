"""Derive a CPU-sized nnU-Net v2 plans file from the plans ``nnUNetv2_plan_and_preprocess`` wrote.

nnU-Net plans for a GPU (3d_fullres patch ~128³, 6 stages, 32..320 channels, batch 2) take minutes per
iteration on a CPU. :func:`write_cpu_plans` keeps everything that defines the data (spacing, normalisation,
resampling, transpose, intensity properties) and replaces the network and sampling part of one
configuration: a small patch, fewer and narrower stages, batch 2. The topology (pooling per axis, conv
kernel sizes) comes from nnU-Net's own ``get_pool_and_conv_props`` for the configuration's spacing, so
anisotropic data (e.g. 1x1x3 mm) gets in-plane-first pooling and 1x3x3 kernels like in nnU-Net's plans.

The new plans are named after the destination file's stem (``nnUNetPlans_cpu.json`` -> ``nnUNetPlans_cpu``)
and hold only the chosen configuration. By default every axis is coarsened to at least 2 mm
(``min_spacing_mm``; 1x1x3 mm -> 2x2x3 mm, a quarter of the voxels), which gives the configuration its own
``data_identifier`` ``<plans_name>_<configuration>``: run ``nnUNetv2_preprocess -plans_name ...`` once. If the
spacing stays the source's (``min_spacing_mm=None`` / ``--min-spacing 0`` and no ``spacing``), the source
``data_identifier`` is kept and the data already preprocessed for the source plans is reused as is::

    python -m nnunet_plugins.cpu_plans $nnUNet_preprocessed/Dataset501_HECKTOR/nnUNetPlans.json \\
        $nnUNet_preprocessed/Dataset501_HECKTOR/nnUNetPlans_cpu.json [--patch 32 48 48] [--features 8 16 32 64]
    nnUNetv2_preprocess -d 501 -plans_name nnUNetPlans_cpu -c 3d_fullres -np 1
    nnUNetv2_train 501 3d_fullres 0 -tr HecMambaTrainer_cpu -p nnUNetPlans_cpu -device cpu

All sizes are in the plans' axis order (after nnU-Net's transpose; (z, y, x) for NIfTI CT), spacings in mm.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path
from typing import Sequence

DEFAULT_PATCH = (32, 48, 48)
DEFAULT_FEATURES = (8, 16, 32, 64)
DEFAULT_MIN_SPACING_MM = 2.0


def _resolved_configuration(plans: dict, name: str) -> dict:
    """The configuration ``name`` with ``inherits_from`` parents merged in (nnU-Net's semantics)."""
    cfgs = plans["configurations"]
    if name not in cfgs:
        raise KeyError(f"configuration {name!r} not in plans (have {sorted(cfgs)})")
    cfg = copy.deepcopy(cfgs[name])
    while "inherits_from" in cfg:
        parent = copy.deepcopy(cfgs[cfg.pop("inherits_from")])
        parent.update(cfg)
        cfg = parent
    return cfg


def cpu_topology(spacing: Sequence[float], patch_size: Sequence[int], n_stages: int,
                 min_feature_map_size: int = 4) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """(patch_size, strides, kernel_sizes) of an ``n_stages``-stage encoder (or fewer if the patch is too small).

    nnU-Net's ``get_pool_and_conv_props`` picks which axes pool at each stage; the result is cut to
    ``n_stages`` and the patch rounded (to the nearest multiple, at least one) so that every axis is
    divisible by its total down-sampling factor."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    _, pools, kernels, _, _ = get_pool_and_conv_props(list(spacing), list(patch_size), min_feature_map_size,
                                                      n_stages - 1)
    pools, kernels = [list(map(int, p)) for p in pools[:n_stages]], [list(map(int, k)) for k in kernels[:n_stages]]
    div = [math.prod(p[a] for p in pools) for a in range(len(patch_size))]
    patch = [max(d, int(round(s / d)) * d) for s, d in zip(patch_size, div)]
    return patch, pools, kernels


def cpu_plans(plans: dict, plans_name: str, patch_size: Sequence[int] = DEFAULT_PATCH,
              features: Sequence[int] = DEFAULT_FEATURES, batch_size: int = 2, spacing: Sequence[float] | None = None,
              configuration: str = "3d_fullres", min_spacing_mm: float | None = DEFAULT_MIN_SPACING_MM,
              min_feature_map_size: int = 4) -> dict:
    """A new plans dict: ``plans`` with only ``configuration``, resized for CPU training (see module doc)."""
    cfg = _resolved_configuration(plans, configuration)
    if len(patch_size) != len(cfg["patch_size"]):
        raise ValueError(f"patch_size {tuple(patch_size)} has {len(patch_size)} axes, the configuration "
                         f"{len(cfg['patch_size'])}")
    old_spacing = [float(s) for s in cfg["spacing"]]
    if spacing is not None:
        new_spacing = [float(s) for s in spacing]
    elif min_spacing_mm:
        new_spacing = [max(s, float(min_spacing_mm)) for s in old_spacing]
    else:
        new_spacing = old_spacing
    if len(new_spacing) != len(old_spacing):
        raise ValueError(f"spacing {tuple(new_spacing)} has the wrong number of axes")
    if new_spacing != old_spacing:
        cfg["spacing"] = new_spacing
        cfg["data_identifier"] = f"{plans_name}_{configuration}"
        cfg["median_image_size_in_voxels"] = [round(m * o / n) for m, o, n in
                                              zip(cfg["median_image_size_in_voxels"], old_spacing, new_spacing)]
    patch, strides, kernels = cpu_topology(new_spacing, patch_size, len(features), min_feature_map_size)
    n = len(strides)
    arch = cfg["architecture"]["arch_kwargs"]
    n_conv = arch.get("n_conv_per_stage", [2])
    n_conv = n_conv[0] if isinstance(n_conv, (list, tuple)) else int(n_conv)
    arch.update(n_stages=n, features_per_stage=[int(f) for f in features[:n]], kernel_sizes=kernels, strides=strides,
                n_conv_per_stage=[n_conv] * n, n_conv_per_stage_decoder=[1] * (n - 1))
    if "n_blocks_per_stage" in arch:  # ResidualEncoderUNet plans
        arch["n_blocks_per_stage"] = [1] * n
    cfg.update(patch_size=patch, batch_size=int(batch_size))
    for link in ("next_stage", "previous_stage"):  # cascade links point at configurations not kept here
        cfg.pop(link, None)
    out = copy.deepcopy(plans)
    out["plans_name"] = plans_name
    out["configurations"] = {configuration: cfg}
    return out


def write_cpu_plans(src_plans_json: str | Path, dst_plans_json: str | Path, patch_size: Sequence[int] = DEFAULT_PATCH,
                    features: Sequence[int] = DEFAULT_FEATURES, batch_size: int = 2,
                    spacing: Sequence[float] | None = None, configuration: str = "3d_fullres",
                    min_spacing_mm: float | None = DEFAULT_MIN_SPACING_MM) -> dict:
    """Read nnU-Net plans from ``src_plans_json``, write the CPU plans (name = ``dst_plans_json`` stem) and
    return them. Defaults: spacing coarsened to >= 2 mm per axis, patch 32x48x48 voxels, 4 stages of
    8-16-32-64 channels, batch 2 (~1 s per training iteration of HecMamba on 2 cores)."""
    src, dst = Path(src_plans_json), Path(dst_plans_json)
    if dst.suffix != ".json":
        raise ValueError(f"destination must be a .json file named after the plans, got {dst}")
    if src.resolve() == dst.resolve():
        raise ValueError("source and destination plans are the same file")
    plans = cpu_plans(json.loads(src.read_text()), dst.stem, patch_size, features, batch_size, spacing, configuration,
                      min_spacing_mm)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_text(json.dumps(plans, indent=4))
    tmp.replace(dst)
    return plans


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m nnunet_plugins.cpu_plans", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="source plans, e.g. $nnUNet_preprocessed/DatasetXXX/nnUNetPlans.json")
    ap.add_argument("dst", type=Path, help="destination; its stem is the new plans name (nnUNetPlans_cpu.json)")
    ap.add_argument("--patch", type=int, nargs="+", default=list(DEFAULT_PATCH), help="patch size in voxels (z y x)")
    ap.add_argument("--features", type=int, nargs="+", default=list(DEFAULT_FEATURES), help="channels per stage")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--spacing", type=float, nargs="+", default=None, help="target spacing in mm (z y x); "
                    "(overrides --min-spacing)")
    ap.add_argument("--min-spacing", type=float, default=DEFAULT_MIN_SPACING_MM,
                    help="coarsen every axis to at least this spacing in mm; 0 keeps the source spacing")
    ap.add_argument("--configuration", default="3d_fullres")
    a = ap.parse_args(argv)
    plans = write_cpu_plans(a.src, a.dst, a.patch, a.features, a.batch_size, a.spacing, a.configuration,
                            a.min_spacing or None)
    cfg = plans["configurations"][a.configuration]
    arch = cfg["architecture"]["arch_kwargs"]
    print(f"wrote {a.dst}: plans {plans['plans_name']}, {a.configuration} patch {cfg['patch_size']}, batch "
          f"{cfg['batch_size']}, spacing {cfg['spacing']}, {arch['n_stages']} stages {arch['features_per_stage']}, "
          f"strides {arch['strides']}, data_identifier {cfg['data_identifier']}")


if __name__ == "__main__":
    main()
