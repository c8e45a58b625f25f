"""Portable selective scan vs the sequential reference, side by side, on CPU (float32).

    python benchmarks/bench_selective_scan.py [--length 4096] [--bwd-length 1024] [--repeats 3]

Forward at batch 2, d_inner 384, d_state 16, L 4096; backward (autograd through the reference vs our
Function) at L 1024, where the reference's backward is still tolerable. Wall time (min over repeats) and,
because the machine may be shared, process CPU time (all threads) of each side. Each measurement runs in a fresh
process so the peak-RSS increase of the op (MB) is measured cleanly. Also checks that outputs and
gradients agree (max |a-b| / max |b|).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from _fresh_process import run_in_fresh_process  # sibling module: benchmarks/ is on sys.path

BATCH, D_INNER, D_STATE = 2, 384, 16


def _inputs(length: int, grad: bool, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    u = torch.randn(BATCH, D_INNER, length, generator=g)
    delta = torch.randn(BATCH, D_INNER, length, generator=g) * 0.5 - 1.0
    A = -torch.exp(torch.randn(D_INNER, D_STATE, generator=g) * 0.5)
    B = torch.randn(BATCH, D_STATE, length, generator=g)
    C = torch.randn(BATCH, D_STATE, length, generator=g)
    D = torch.randn(D_INNER, generator=g)
    z = torch.randn(BATCH, D_INNER, length, generator=g)
    bias = torch.randn(D_INNER, generator=g) * 0.1
    tensors = [u, delta, A, B, C, D, z, bias]
    return [t.requires_grad_(grad) for t in tensors]


def _run(fn, ins, backward: bool):
    import torch

    out = fn(*ins[:5], D=ins[5], z=ins[6], delta_bias=ins[7], delta_softplus=True)
    if not backward:
        return out.detach(), None
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((out * w).sum(), ins)
    return out.detach(), grads


def _worker(impl: str, length: int, backward: bool, repeats: int, queue) -> None:
    import torch

    from nnunet_plugins.ops import selective_scan_fn, selective_scan_ref

    fn = selective_scan_ref if impl == "reference" else selective_scan_fn
    _run(fn, _inputs(64, backward), backward)  # warm-up (numba compile / cache load)
    ins = _inputs(length, backward)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out, grads = _run(fn, ins, backward)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    torch.save({"out": out, "grads": grads}, f"/tmp/_bench_scan_{os.getpid()}.pt")
    queue.put((min(times), min(cpu), peak_mb, f"/tmp/_bench_scan_{os.getpid()}.pt"))


def measure(impl: str, length: int, backward: bool, repeats: int):
    return run_in_fresh_process(_worker, impl, length, backward, repeats)


def _rel(a, b) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def compare(length: int, backward: bool, repeats: int) -> None:
    import torch

    t_ref, c_ref, m_ref, f_ref = measure("reference", length, backward, 1 if backward else repeats)
    t_new, c_new, m_new, f_new = measure("portable", length, backward, repeats)
    r_ref, r_new = torch.load(f_ref, weights_only=True), torch.load(f_new, weights_only=True)
    os.remove(f_ref), os.remove(f_new)
    errs = [_rel(r_new["out"], r_ref["out"])]
    if backward:
        errs += [_rel(a, b) for a, b in zip(r_new["grads"], r_ref["grads"])]
    kind = "fwd+bwd" if backward else "forward"
    print(f"{kind:8s} B={BATCH} D={D_INNER} L={length} N={D_STATE} fp32 | reference {t_ref * 1e3:9.1f} ms "
          f"(peak +{m_ref:7.1f} MB) | portable {t_new * 1e3:8.1f} ms (peak +{m_new:6.1f} MB) | "
          f"speed-up {t_ref / t_new:6.1f}x | CPU time {c_ref * 1e3:.0f} / {c_new * 1e3:.0f} ms = {c_ref / c_new:.1f}x | "
          f"max rel err {max(errs):.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--bwd-length", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    from nnunet_plugins.ops.scan_numba import num_threads

    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, numba threads {num_threads()}")
    compare(args.length, backward=False, repeats=args.repeats)
    compare(args.bwd_length, backward=True, repeats=args.repeats)


if __name__ == "__main__":
    main()
