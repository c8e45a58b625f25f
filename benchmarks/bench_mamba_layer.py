"""CPU time of one MambaLayer forward+backward (the 16³ stage of a 64³ patch: 128 channels, batch 2).

    python benchmarks/bench_mamba_layer.py [--channels 128] [--size 16] [--batch 2] [--repeats 4]

For A/B comparisons of two checkouts, alternate ``PYTHONPATH=<checkout> python benchmarks/bench_mamba_layer.py``.
Prints min and median process CPU time after one warm-up.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=4)
    a = ap.parse_args()
    from nnunet_plugins.networks.mamba_block import MambaLayer

    torch.manual_seed(0)
    layer = MambaLayer(a.channels)
    x = torch.randn(a.batch, a.channels, a.size, a.size, a.size, requires_grad=True)
    layer(x).sum().backward()  # warm-up (numba JIT / cache load)
    cs = []
    for _ in range(a.repeats):
        c0 = time.process_time()
        layer(x).sum().backward()
        cs.append(time.process_time() - c0)
    cs.sort()
    print(f"MambaLayer({a.channels}) {a.batch}x{a.size}^3 fwd+bwd CPU ms: min {cs[0] * 1e3:.0f}, "
          f"median {cs[len(cs) // 2] * 1e3:.0f}")


if __name__ == "__main__":
    main()
