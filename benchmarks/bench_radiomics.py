"""Radiomics throughput: seconds per patient (tumour + peritumoral region) with 1 and 2 worker processes.

    python benchmarks/bench_radiomics.py [--cohort DIR | --n 8 --seed 0] [--params fast]

Each run starts from an empty cache. 1 worker runs in the calling process; 2 workers use the
spawn-context process pool of ``extract_cohort`` (worker start-up included in the timing).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", default=None, help="existing cohort (default: synthesise one)")
    ap.add_argument("--n", type=int, default=8, help="patients to synthesise / use")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params", default=None, help="params YAML or 'fast' (default: full 1,502/region)")
    a = ap.parse_args(argv)

    from hnc_core.cohort import load_cohort
    from hnc_core.synth import generate_cohort
    from survival_head.radiomics import expected_feature_count, extract_cohort, load_params

    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(a.cohort) if a.cohort else Path(tmp) / "cohort"
        if not a.cohort:
            generate_cohort(cohort, n=a.n, seed=a.seed, progress=False)
        ids = load_cohort(cohort, check_images=False).usable_ids("images")[: a.n]
        n_feat = expected_feature_count(load_params(a.params))
        print(f"cohort {cohort} | {len(ids)} patients | {n_feat} features/region x 2 regions | "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the runs")
        per = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            df = extract_cohort(cohort, Path(tmp) / f"cache{workers}", workers=workers, ids=ids,
                                params=a.params, progress=False)
            dt = time.perf_counter() - t0
            per[workers] = dt / len(ids)
            print(f"workers={workers}: {dt:7.1f} s total, {per[workers]:6.2f} s/patient "
                  f"({df.shape[1]} features, {len(df.attrs['errors'])} failures)")
        print(f"load average {os.getloadavg()[0]:.1f} after the runs (other processes share the CPUs)")
        print(f"speed-up 2 vs 1 workers: {per[1] / per[2]:.2f}x (s/patient ratio 1w/2w)")


if __name__ == "__main__":
    main()
