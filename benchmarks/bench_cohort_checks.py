"""Cost of the shared cohort checks (issue 13) next to the RFS preprocessing they now precede.

    python benchmarks/bench_cohort_checks.py --cohort DIR [--size 96]

Prints wall and CPU seconds per patient for: discovery only (``check_images=False``), the full voxel checks
(``check_images=True``, what validate and bundle inference run), and RFS read + preprocess at ``--size``;
then the ratio checks / preprocessing, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import time


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--size", type=int, default=96)
    a = ap.parse_args()

    from hnc_core.cohort import load_cohort
    from survival_head.rfs.data import preprocess_patient

    cohort, w0, c0 = _timed(lambda: load_cohort(a.cohort, check_images=False))
    _, w1, c1 = _timed(lambda: load_cohort(a.cohort, check_images=True))
    ids = cohort.usable_ids("images")
    n = len(ids)
    _, w2, c2 = _timed(lambda: [preprocess_patient(i, cohort.patients[i].ct, cohort.patients[i].pet, a.size)
                                for i in ids])
    print(f"{n} patients")
    print(f"discovery only      {w0 / n:.3f} s/patient wall, {c0 / n:.3f} CPU")
    print(f"full voxel checks   {w1 / n:.3f} s/patient wall, {c1 / n:.3f} CPU")
    print(f"RFS preprocess {a.size}^3 {w2 / n:.3f} s/patient wall, {c2 / n:.3f} CPU")
    print(f"checks / preprocess: {w1 / w2:.2f}x wall, {c1 / c2:.2f}x CPU")


if __name__ == "__main__":
    main()
