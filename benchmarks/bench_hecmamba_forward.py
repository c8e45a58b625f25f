"""HecMamba vs nnU-Net's PlainConvUNet built from the same plans: forward time on CPU, side by side.

    python benchmarks/bench_hecmamba_forward.py [--patch 64 64 64] [--batch 1] [--repeats 2] [--flops]
    python benchmarks/bench_hecmamba_forward.py --plans $nnUNet_preprocessed/Dataset501_HECKTOR/nnUNetPlans.json

With --plans, both networks are built from a real nnU-Net plans file (PlainConvUNet by nnU-Net's
``get_network_from_plans``, HecMamba by the trainer's builder) at the plans' patch size and batch size.

The plans are nnU-Net-like 3d_fullres defaults for the patch (features 32..320, stride-2 stages down to 4
voxels). --flops also counts GFLOPs and parameters (torch.utils.flop_counter; the selective scan is a
custom op and is counted separately as ~9 B D L N flops per direction).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn


def plans_kwargs(patch: list[int]) -> dict:
    n_stages = min(6, 1 + int(math.log2(min(patch) // 4)))
    feats = [min(32 * 2 ** i, 320) for i in range(n_stages)]
    return dict(n_stages=n_stages, features_per_stage=feats, conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * n_stages,
                strides=[[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1), conv_bias=True, norm_op=nn.InstanceNorm3d,
                norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})


def build(patch: list[int]):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from nnunet_plugins.networks.hecmamba import HecMamba, hecmamba_kwargs_from_plans

    kw = plans_kwargs(patch)
    plain = PlainConvUNet(2, num_classes=3, n_conv_per_stage=2, n_conv_per_stage_decoder=2, deep_supervision=True,
                          **{k: v for k, v in kw.items()})
    hec = HecMamba(2, num_classes=3, deep_supervision=True, **hecmamba_kwargs_from_plans(kw, patch))
    return plain.eval(), hec.eval()


def build_from_plans(plans_json: str, configuration: str):
    """(PlainConvUNet, HecMamba, patch, batch) from an nnU-Net plans file."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_plugins.networks.hecmamba import HecMamba
    from nnunet_plugins.trainers.build import make_builder

    pm = PlansManager(plans_json)
    cm = pm.get_configuration(configuration)
    plain = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                   cm.network_arch_init_kwargs_req_import, 2, 3, deep_supervision=True)
    hec = make_builder(HecMamba)(pm, cm, 2, 3, True)
    return plain.eval(), hec.eval(), list(cm.patch_size), int(cm.batch_size)


def timeit(net: nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(wall s, process CPU s), minima over ``repeats`` after one warm-up."""
    with torch.no_grad():
        net(x)
        ts, cs = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            net(x)
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
    return min(ts), min(cs)


def flops(net: nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x)
    return fc.get_total_flops()


def scan_flops(net: nn.Module, patch: list[int]) -> float:
    from nnunet_plugins.networks.hecmamba import stage_sizes
    from nnunet_plugins.networks.mamba_block import MambaLayer

    total = 0.0
    sizes = stage_sizes(patch, net.encoder.strides)
    for layer, size in zip(net.encoder.mamba_layers, sizes):
        if isinstance(layer, MambaLayer):
            total += 3 * 9 * layer.mamba.d_inner * math.prod(size) * layer.mamba.d_state
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patch", type=int, nargs=3, default=[64, 64, 64])
    ap.add_argument("--batch", type=int, default=None, help="default 1, or the plans' batch size with --plans")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--flops", action="store_true")
    ap.add_argument("--plans", default=None, help="nnU-Net plans JSON: build both nets from it (patch, batch too)")
    ap.add_argument("--configuration", default="3d_fullres")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.plans:
        plain, hec, args.patch, plans_batch = build_from_plans(args.plans, args.configuration)
        args.batch = args.batch or plans_batch
    else:
        plain, hec = build(args.patch)
        args.batch = args.batch or 1
    x = torch.randn(args.batch, 2, *args.patch)
    (t_plain, c_plain), (t_hec, c_hec) = timeit(plain, x, args.repeats), timeit(hec, x, args.repeats)
    n_plain = sum(p.numel() for p in plain.parameters())
    n_hec = sum(p.numel() for p in hec.parameters())
    print(f"patch {args.patch} batch {args.batch}, CPU, {torch.get_num_threads()} threads; Mamba at stages "
          f"{hec.mamba_stage_ids}")
    print(f"PlainConvUNet {t_plain * 1e3:8.0f} ms (CPU {c_plain * 1e3:8.0f} ms)  {n_plain / 1e6:6.2f} M params")
    print(f"HecMamba      {t_hec * 1e3:8.0f} ms (CPU {c_hec * 1e3:8.0f} ms)  {n_hec / 1e6:6.2f} M params   "
          f"ratio {t_hec / t_plain:.2f}x (CPU time {c_hec / c_plain:.2f}x)")
    if args.flops:
        gp, gh = flops(plain, x[:1]) / 1e9, (flops(hec, x[:1]) + scan_flops(hec, args.patch)) / 1e9
        print(f"GFLOPs per sample: PlainConvUNet {gp:.1f}, HecMamba {gh:.1f} (scan {scan_flops(hec, args.patch) / 1e9:.2f})")


if __name__ == "__main__":
    main()
