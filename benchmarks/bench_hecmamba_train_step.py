"""One full nnU-Net training iteration, HecMamba vs nnU-Net's PlainConvUNet at the same plans, on CPU.

    python benchmarks/bench_hecmamba_train_step.py [--patch 64 64 64] [--batch 2] [--repeats 3]

An iteration is what ``nnUNetTrainer.train_step`` does: forward with deep supervision, nnU-Net's
Dice+CE loss (``DC_and_CE_loss`` with ``MemoryEfficientSoftDiceLoss``, ``DeepSupervisionWrapper`` with
nnU-Net's weights), backward, gradient clipping (norm 12), optimizer step (each network with its trainer's
optimizer: SGD Nesterov for nnU-Net, AdamW for HecMamba). Networks from nnU-Net-like 3d_fullres plans for
the patch (see bench_hecmamba_forward.py). The two networks alternate, iteration by iteration, so load
changes hit both alike; reported: median wall and process CPU time per iteration after one warm-up, and
their ratios (goal: HecMamba <= 1.2x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench_hecmamba_forward import build


def make_loss(n_outputs: int):
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    loss = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    weights = np.array([1 / (2 ** i) for i in range(n_outputs)])
    weights[-1] = 0
    return DeepSupervisionWrapper(loss, weights / weights.sum())


def targets_for(outputs: list[torch.Tensor], label: torch.Tensor) -> list[torch.Tensor]:
    """nnU-Net's deep-supervision targets: the label downsampled (nearest) to each output's size."""
    return [F.interpolate(label, size=o.shape[2:], mode="nearest") for o in outputs]


class Step:
    def __init__(self, net, optimizer, x, label):
        self.net, self.opt, self.x = net.train(), optimizer, x
        with torch.no_grad():
            self.targets = targets_for(net(x), label)
        self.loss = make_loss(len(self.targets))

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        out = self.net(self.x)
        loss = self.loss(out, self.targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 12)
        self.opt.step()
        return float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patch", type=int, nargs=3, default=[64, 64, 64])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ablation", action="store_true",
                    help="also HecMambaNoMamba (same encoder/decoder, no Mamba layers): splits the cost")
    args = ap.parse_args()
    torch.manual_seed(0)
    from nnunet_plugins.ops.backend import describe
    from nnunet_plugins.trainers.schedule import param_groups

    plain, hec = build(args.patch)
    x = torch.randn(args.batch, 2, *args.patch)
    label = torch.randint(0, 3, (args.batch, 1, *args.patch)).float()
    steps = {"PlainConvUNet": Step(plain, torch.optim.SGD(plain.parameters(), 1e-2, momentum=0.99, nesterov=True,
                                                          weight_decay=3e-5), x, label),
             "HecMamba": Step(hec, torch.optim.AdamW(param_groups(hec, 1e-2), lr=1e-3), x, label)}
    if args.ablation:
        from nnunet_plugins.networks.hecmamba import HecMambaNoMamba, hecmamba_kwargs_from_plans
        from bench_hecmamba_forward import plans_kwargs

        torch.manual_seed(0)
        abl = HecMambaNoMamba(2, num_classes=3, deep_supervision=True,
                              **hecmamba_kwargs_from_plans(plans_kwargs(args.patch), args.patch))
        steps["HecMambaNoMamba"] = Step(abl, torch.optim.AdamW(param_groups(abl, 1e-2), lr=1e-3), x, label)
    times = {k: ([], []) for k in steps}
    for i in range(args.repeats + 1):
        for name, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            if i:  # first round: warm-up (numba JIT / cache load, allocator)
                times[name][0].append(time.perf_counter() - t0)
                times[name][1].append(time.process_time() - c0)
    med = {k: (statistics.median(w), statistics.median(c)) for k, (w, c) in times.items()}
    print(f"train iteration: patch {args.patch} batch {args.batch}, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} after 1 warm-up; Mamba at stages {hec.mamba_stage_ids}")
    print(describe("cpu"))
    (wp, cp), (wh, ch) = med["PlainConvUNet"], med["HecMamba"]
    print(f"PlainConvUNet {wp * 1e3:8.0f} ms (CPU {cp * 1e3:8.0f} ms)")
    print(f"HecMamba      {wh * 1e3:8.0f} ms (CPU {ch * 1e3:8.0f} ms)   ratio {wh / wp:.2f}x (CPU time {ch / cp:.2f}x)")
    if "HecMambaNoMamba" in med:
        wa, ca = med["HecMambaNoMamba"]
        print(f"HecMambaNoMamba {wa * 1e3:6.0f} ms (CPU {ca * 1e3:8.0f} ms)   ratio {wa / wp:.2f}x (CPU time "
              f"{ca / cp:.2f}x); Mamba layers add {(wh - wa) / wp * 100:.0f}% of PlainConvUNet's wall time "
              f"({(ch - ca) / cp * 100:.0f}% CPU)")


if __name__ == "__main__":
    main()
