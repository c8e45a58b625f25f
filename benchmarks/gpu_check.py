"""HecMamba on one CUDA GPU, in one run of under ~10 minutes. Never part of CI (needs a GPU).

    python benchmarks/gpu_check.py [--work /tmp/hnc_gpu_check] [--iters 20] [--skip-build]

1. Kernels: imports mamba-ssm's ``selective_scan_fn`` and causal-conv1d's ``causal_conv1d_fn``; if they do not
   import, builds them for this GPU only (``TORCH_CUDA_ARCH_LIST`` = its compute capability, the versions pinned
   in tests/upstream_refs.py, ``pip install --no-build-isolation``, time-limited) and says why if that fails.
2. Parity on CUDA tensors, kernel vs portable path (``HNC_SCAN_BACKEND=cuda`` vs ``portable``): selective scan
   and causal conv1d, forward and all gradients, fp32 and bf16 inputs.
3. ``nnUNetv2_plan_and_preprocess`` + ``nnUNetv2_train`` on a tiny synthetic 2-channel dataset with nnU-Net's
   defaults (torch.compile, AMP): ``-tr HecMambaTrainer`` and nnU-Net's ``nnUNetTrainer`` at the same plans
   (short subclasses: 1 epoch of ``--iters`` iterations), printing the median iteration time and peak memory
   side by side.
Everything printed goes to stdout; paste it into docs/hecmamba.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def say(msg: str) -> None:
    print(msg, flush=True)


def kernels_import() -> tuple[bool, str]:
    errors = []
    for mod, fn in (("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn"),
                    ("causal_conv1d.causal_conv1d_interface", "causal_conv1d_fn")):
        try:
            getattr(importlib.import_module(mod), fn)
        except Exception as exc:  # noqa: BLE001 - report whatever breaks the import
            errors.append(f"{mod}.{fn}: {type(exc).__name__}: {exc}")
    return not errors, "; ".join(errors)


def build_kernels(timeout_s: int) -> None:
    import torch

    from tests.upstream_refs import CAUSAL_CONV1D, MAMBA_SSM

    major, minor = torch.cuda.get_device_capability()
    env = {**os.environ, "TORCH_CUDA_ARCH_LIST": f"{major}.{minor}", "MAX_JOBS": str(os.cpu_count() or 4),
           "CAUSAL_CONV1D_FORCE_BUILD": "TRUE", "MAMBA_FORCE_BUILD": "TRUE"}
    for spec in (f"causal-conv1d=={CAUSAL_CONV1D}", f"mamba-ssm=={MAMBA_SSM}"):
        say(f"building {spec} for sm_{major}{minor} (timeout {timeout_s} s) ...")
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-q",
                               spec], env=env, capture_output=True, text=True, timeout=timeout_s)
        say(f"  rc {proc.returncode} in {time.time() - t0:.0f} s")
        if proc.returncode:
            say(textwrap.indent((proc.stdout + proc.stderr)[-3000:], "  | "))


def parity() -> bool:
    import torch

    from nnunet_plugins.ops import causal_conv1d_fn, selective_scan_fn

    dev = torch.device("cuda")
    ok_all = True
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
        g = torch.Generator(device=dev).manual_seed(0)
        b, d, l, n = 2, 256, 2048, 16
        mk = lambda *s: torch.randn(*s, device=dev, generator=g)  # noqa: E731
        ins = [mk(b, d, l).to(dtype), (torch.rand(b, d, l, device=dev, generator=g) * 0.5 - 0.5).to(dtype),
               -torch.rand(d, n, device=dev, generator=g) - 0.1, mk(b, n, l).to(dtype), mk(b, n, l).to(dtype),
               mk(d), mk(b, d, l).to(dtype), torch.rand(d, device=dev, generator=g) * 0.2]
        w = mk(b, d, l)
        res = {}
        for backend in ("cuda", "portable"):
            os.environ["HNC_SCAN_BACKEND"] = backend
            xs = [t.detach().clone().requires_grad_() for t in ins]
            out, last = selective_scan_fn(*xs[:5], D=xs[5], z=xs[6], delta_bias=xs[7], delta_softplus=True,
                                          return_last_state=True)
            grads = torch.autograd.grad((out.float() * w).sum(), xs)
            res[backend] = [out.float(), last.float(), *[gr.float() for gr in grads]]
        names = ["out", "last", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"]
        errs = {k: float((a - c).abs().max() / c.abs().max().clamp_min(1e-12))
                for k, a, c in zip(names, res["cuda"], res["portable"])}
        ok = all(e < tol for e in errs.values())
        ok_all &= ok
        say(f"scan parity {str(dtype):15s} {'OK ' if ok else 'FAIL'} max rel err " +
            ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
        x, wt, bias = mk(b, d, l).to(dtype), mk(d, 4), mk(d)
        cres = {}
        for backend in ("cuda", "portable"):
            os.environ["HNC_SCAN_BACKEND"] = backend
            xs = [t.detach().clone().requires_grad_() for t in (x, wt, bias)]
            y = causal_conv1d_fn(xs[0], xs[1], xs[2], "silu")
            cres[backend] = [y.float(), *[gr.float() for gr in torch.autograd.grad((y.float() * w).sum(), xs)]]
        cerr = [float((a - c).abs().max() / c.abs().max().clamp_min(1e-12)) for a, c in zip(cres["cuda"],
                                                                                            cres["portable"])]
        ok = all(e < tol for e in cerr)
        ok_all &= ok
        say(f"conv1d parity {str(dtype):15s} {'OK ' if ok else 'FAIL'} max rel err out {cerr[0]:.1e}, dx "
            f"{cerr[1]:.1e}, dw {cerr[2]:.1e}, db {cerr[3]:.1e}")
    os.environ.pop("HNC_SCAN_BACKEND", None)
    return ok_all


TRAINERS = '''
import time
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunet_plugins.trainers.HecMambaTrainer import HecMambaTrainer


class _Timed:
    def _short(self):
        self.num_epochs = 1
        self.num_iterations_per_epoch = ITERS
        self.num_val_iterations_per_epoch = 2
        self._it_times = []

    def train_step(self, batch):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = super().train_step(batch)
        torch.cuda.synchronize()
        self._it_times.append(time.perf_counter() - t0)
        return out

    def on_train_end(self):
        ts = sorted(self._it_times[3:] or self._it_times)  # the first iterations include compilation
        msg = (f"GPU_CHECK {type(self).__name__} first {self._it_times[0]:.1f} s, median {ts[len(ts) // 2] * 1e3:.0f} "
               f"ms/iter, peak {torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB, compile {self._do_i_compile()}")
        self.print_to_log_file(msg)
        print(msg, flush=True)
        super().on_train_end()


class GpuCheck_nnUNetTrainer(_Timed, nnUNetTrainer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._short()


class GpuCheck_HecMambaTrainer(_Timed, HecMambaTrainer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._short()
'''


def synthetic_dataset(raw: Path, n: int = 8, shape=(80, 160, 160)) -> None:
    import numpy as np
    import SimpleITK as sitk

    ds = raw / "Dataset998_GpuCheck"
    (ds / "imagesTr").mkdir(parents=True, exist_ok=True)
    (ds / "labelsTr").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    for i in range(n):
        lab = np.zeros(shape, np.uint8)
        for cls, r in ((1, 14), (2, 7)):
            c = [rng.integers(r + 4, s - r - 4) for s in shape]
            lab[((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < r * r] = cls
        ct = rng.normal(0, 30, shape) + 60.0 * (lab > 0)
        pet = rng.gamma(2.0, 0.5, shape) + 6.0 * (lab > 0)
        for arr, ch in ((ct, "0000"), (pet, "0001")):
            img = sitk.GetImageFromArray(arr.astype(np.float32))
            img.SetSpacing((1.0, 1.0, 3.0))
            sitk.WriteImage(img, str(ds / "imagesTr" / f"case{i:03d}_{ch}.nii.gz"))
        img = sitk.GetImageFromArray(lab)
        img.SetSpacing((1.0, 1.0, 3.0))
        sitk.WriteImage(img, str(ds / "labelsTr" / f"case{i:03d}.nii.gz"))
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "GTVp": 1, "GTVn": 2},
        "numTraining": n, "file_ending": ".nii.gz"}))


def run(cmd: list[str], env: dict, timeout: int) -> subprocess.CompletedProcess:
    say("$ " + " ".join(cmd))
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    say(f"  rc {proc.returncode} in {time.time() - t0:.0f} s")
    if proc.returncode:
        say(textwrap.indent((proc.stdout + proc.stderr)[-4000:], "  | "))
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/hnc_gpu_check")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--build-timeout", type=int, default=300, help="seconds per kernel package build")
    args = ap.parse_args()
    t_start = time.time()
    import torch

    if not torch.cuda.is_available():
        say("no CUDA device: this check needs one GPU")
        return 2
    say(f"GPU {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}), torch "
        f"{torch.__version__}, CUDA {torch.version.cuda}")
    ok, why = kernels_import()
    if not ok and not args.skip_build:
        say(f"kernels do not import ({why}); building them")
        try:
            build_kernels(args.build_timeout)
        except subprocess.TimeoutExpired as exc:
            say(f"kernel build timed out: {exc}")
        ok, why = kernels_import()
    say("kernels: " + ("mamba-ssm and causal-conv1d import" if ok else f"NOT available: {why}"))
    from nnunet_plugins.ops.backend import describe

    say(describe("cuda"))
    if ok:
        parity_ok = parity()
        say(f"parity: {'all OK' if parity_ok else 'FAILED'}")

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    raw, pre, res, ext = (work / n for n in ("raw", "preprocessed", "results", "trainers"))
    for p in (raw, pre, res, ext):
        p.mkdir(parents=True)
    (ext / "gpu_check_trainers.py").write_text(TRAINERS.replace("ITERS", str(args.iters)))
    synthetic_dataset(raw)
    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(pre), "nnUNet_results": str(res),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "nnUNet_extTrainer": os.pathsep.join([str(REPO / "nnunet_plugins" / "trainers"), str(ext)])}
    env.pop("nnUNet_compile", None)  # nnU-Net's default: compile on CUDA
    bindir = Path(sys.executable).parent
    run([str(bindir / "nnUNetv2_plan_and_preprocess"), "-d", "998", "-c", "3d_fullres", "-np", "4"], env, 300)
    plans = json.loads((pre / "Dataset998_GpuCheck" / "nnUNetPlans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    say(f"plans: patch {cfg['patch_size']} batch {cfg['batch_size']}")
    lines = {}
    for trainer in ("GpuCheck_nnUNetTrainer", "GpuCheck_HecMambaTrainer"):
        proc = run([str(bindir / "nnUNetv2_train"), "998", "3d_fullres", "0", "-tr", trainer], env, 420)
        found = re.findall(r"GPU_CHECK .*", proc.stdout)
        backend = re.findall(r"training start: .*", proc.stdout)
        lines[trainer] = found[-1] if found else f"GPU_CHECK {trainer} did not finish (rc {proc.returncode})"
        if backend:
            say("  " + backend[-1])
    for line in lines.values():
        say(line)
    nums = {k: re.search(r"median (\d+) ms/iter", v) for k, v in lines.items()}
    if all(nums.values()):
        a, b = (int(nums[k].group(1)) for k in ("GpuCheck_nnUNetTrainer", "GpuCheck_HecMambaTrainer"))
        say(f"iteration time HecMamba / nnUNetTrainer: {b / a:.2f}x")
    say(f"total {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
