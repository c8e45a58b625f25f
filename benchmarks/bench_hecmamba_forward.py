"""HecMamba vs nnU-Net's PlainConvUNet built from the same plans: forward time on CPU, side by side.

    python benchmarks/bench_hecmamba_forward.py [--patch 64 64 64] [--batch 1] [--repeats 2] [--flops]

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


def timeit(net: nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        net(x)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            ts.append(time.perf_counter() - t0)
    return min(ts)


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
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--flops", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    plain, hec = build(args.patch)
    x = torch.randn(args.batch, 2, *args.patch)
    t_plain, t_hec = timeit(plain, x, args.repeats), timeit(hec, x, args.repeats)
    n_plain = sum(p.numel() for p in plain.parameters())
    n_hec = sum(p.numel() for p in hec.parameters())
    print(f"patch {args.patch} batch {args.batch}, CPU, {torch.get_num_threads()} threads; Mamba at stages "
          f"{hec.mamba_stage_ids}")
    print(f"PlainConvUNet {t_plain * 1e3:8.0f} ms  {n_plain / 1e6:6.2f} M params")
    print(f"HecMamba      {t_hec * 1e3:8.0f} ms  {n_hec / 1e6:6.2f} M params   ratio {t_hec / t_plain:.2f}x")
    if args.flops:
        gp, gh = flops(plain, x[:1]) / 1e9, (flops(hec, x[:1]) + scan_flops(hec, args.patch)) / 1e9
        print(f"GFLOPs per sample: PlainConvUNet {gp:.1f}, HecMamba {gh:.1f} (scan {scan_flops(hec, args.patch) / 1e9:.2f})")


if __name__ == "__main__":
    main()
