"""Benchmark RFS inference on full-size HECKTOR-like volumes (CT 512x512x200, PET 4 mm), 5-fold ensemble.

    python benchmarks/bench_rfs_inference.py [--cohort DIR] [--n 2] [--size 96] [--repeats 2]

Prints per-stage times: NIfTI reading, one-resampling preprocessing, forward passes (eager float32 vs
inference_mode + channels_last_3d + the five fold models batched), whole ensemble inference vs five bare
forwards, and the naive path (whole-volume 1 mm resample, crop, resize) vs the one-resampling path
(time and peak RSS, each in a fresh process). Weights are random (timing only).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from _fresh_process import run_in_fresh_process  # sibling module: benchmarks/ is on sys.path

import torch


def _timeit(fn, repeats: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _vmap_folds(nets, x, c, repeats):
    """The fold models as one batched call: weights stacked, ``torch.vmap`` over the model axis."""
    import copy

    from torch.func import functional_call, stack_module_state

    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")

    def one(p, b, xx, cc):
        return functional_call(base, (p, b), (xx, cc))

    batched = torch.vmap(one, in_dims=(0, 0, None, None))
    with torch.inference_mode():
        return _timeit(lambda: batched(params, buffers, x, c), repeats)


def _path_worker(kind: str, ct_path: str, pet_path: str, size: int, q) -> None:
    import SimpleITK as sitk

    from survival_head.rfs.reference import naive_preprocess
    from survival_head.rfs.transforms import PetGuidedCropResample, NormalizePetCt

    ct, pet = sitk.ReadImage(ct_path, sitk.sitkFloat32), sitk.ReadImage(pet_path, sitk.sitkFloat32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if kind == "naive":
        naive_preprocess(ct, pet, size)
    else:
        NormalizePetCt()(PetGuidedCropResample(size)(ct, pet)[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q.put((time.perf_counter() - t, (peak - base) / 1024, peak / 1024))


def _in_fresh_process(kind, ct, pet, size):
    return run_in_fresh_process(_path_worker, kind, ct, pet, size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cohort", default="/tmp/rfs_bench_full")
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    import SimpleITK as sitk

    from hnc_core.synth import generate_cohort
    from survival_head.rfs.clinical import n_clinical_for
    from survival_head.rfs.transforms import LoadPetCtd, NormalizePetCt, PetGuidedCropResample
    from survival_head.rfs.workflows import build_network

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cohort = Path(a.cohort)
    if not any(cohort.glob("*/*__CT.nii.gz")):
        generate_cohort(cohort, n=a.n, seed=5, size="full")
    pids = sorted(p.name for p in cohort.iterdir() if (p / f"{p.name}__CT.nii.gz").is_file())[: a.n]
    S = a.size
    # memory first, while this process is small: a child's ru_maxrss starts from the parent's at fork
    ctp0, petp0 = (str(cohort / pids[0] / f"{pids[0]}__{m}.nii.gz") for m in ("CT", "PT"))
    nt, nm, na = _in_fresh_process("naive", ctp0, petp0, S)
    ot, om, oa = _in_fresh_process("one", ctp0, petp0, S)
    print(f"threads={torch.get_num_threads()} image_size={S} patients={len(pids)}")
    read_t, prep_t, images = [], [], []
    load = LoadPetCtd(("ct", "pet"))  # the pipeline's reader: CT in its stored type, CT and PET concurrently
    for pid in pids:
        ctp, petp = (str(cohort / pid / f"{pid}__{m}.nii.gz") for m in ("CT", "PT"))
        t0, _ = _timeit(lambda: (sitk.ReadImage(ctp, sitk.sitkFloat32), sitk.ReadImage(petp, sitk.sitkFloat32)),
                        a.repeats)
        t, d = _timeit(lambda: load({"id": pid, "ct": ctp, "pet": petp}), a.repeats)
        ct, pet = d["ct"], d["pet"]
        p, x = _timeit(lambda: NormalizePetCt()(PetGuidedCropResample(S)(ct, pet, pid)[0]), a.repeats)
        read_t.append(t), prep_t.append(p), images.append(x)
        print(f"{pid}: CT {ct.GetSize()} {tuple(round(s, 3) for s in ct.GetSpacing())} mm | read {t:.3f} s "
              f"(serial float32 read {t0:.3f} s) | preprocess {p:.3f} s | read+preprocess {t + p:.3f} s")
    print(f"read+preprocess per patient: mean {sum(read_t + prep_t) / len(pids):.3f} s")
    x = images[0][None]
    c = torch.zeros(1, n_clinical_for())
    nets = [build_network(seed=k).eval() for k in range(5)]
    with torch.no_grad():
        eager, _ = _timeit(lambda: [n(x, c) for n in nets], a.repeats)
    fast_nets = [n.to(memory_format=torch.channels_last_3d) for n in nets]
    xf = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        fast, _ = _timeit(lambda: [n(xf, c) for n in fast_nets], a.repeats)
        ref = torch.stack([n(x, c) for n in nets])
        got = torch.stack([n(xf, c) for n in fast_nets])
    print(f"forward x5 folds, eager float32: {eager:.3f} s ({eager / 5:.3f} s/model)")
    print(f"forward x5 folds, inference_mode+channels_last_3d: {fast:.3f} s ({fast / 5:.3f} s/model), "
          f"max |diff| vs eager {float((ref - got).abs().max()):.2e}")
    vm, vm_out = _vmap_folds(nets, x, c, a.repeats)
    print(f"forward x5 folds, batched with torch.func (stacked weights, vmap): {vm:.3f} s ({vm / 5:.3f} s/model), "
          f"max |diff| vs eager {float((ref - vm_out).abs().max()):.2e}")
    bare = min(eager, fast)
    # whole ensemble inference for one patient: read + preprocess + 5 x (features + ridge Cox) + combine
    pid = pids[0]
    ctp, petp = (str(cohort / pid / f"{pid}__{m}.nii.gz") for m in ("CT", "PT"))
    coef = torch.randn(128, dtype=torch.float64)

    def whole():
        d = load({"id": pid, "ct": ctp, "pet": petp})
        img = NormalizePetCt()(PetGuidedCropResample(S)(d["ct"], d["pet"], pid)[0])[None]
        img = img.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            risks = [float(n.features(img, c).double()[0] @ coef) for n in fast_nets]
        return sum(risks) / 5

    w, _ = _timeit(whole, a.repeats)
    print(f"whole inference (read+preprocess+5 folds+ensemble): {w:.3f} s = {w / bare:.2f}x the bare 5 forwards")
    print(f"naive path (1 mm whole-volume resample, crop, resize): {nt:.3f} s, peak RSS {na:.0f} MiB "
          f"(+{nm:.0f} MiB above the peak after reading)")
    print(f"one-resampling path: {ot:.3f} s, peak RSS {oa:.0f} MiB (+{om:.0f} MiB above the peak after reading)")
    print(f"ratio naive/one: time {nt / ot:.1f}x, process peak RSS {na / oa:.1f}x")


if __name__ == "__main__":
    main()
