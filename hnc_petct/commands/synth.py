"""``hnc-petct synth``: write the synthetic cohort."""

from __future__ import annotations

import argparse
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", metavar="OUT", help="output cohort folder (HECKTOR 2025 layout)")
    p.add_argument("--n", type=int, default=40, help="number of patients (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same cohort (default 0)")
    p.add_argument("--size", choices=["small", "full"], default="small",
                   help="small: 128x128x48 CT at 1x1x3 mm (~1 MB/patient, default); "
                        "full: 512x512x200 clinical-size volumes")
    p.add_argument("--primary-site", dest="primary_site", choices=["oropharynx", "low_neck"], default="oropharynx",
                   help="where primaries are drawn: oropharynx (default) or low_neck (larynx/hypopharynx and "
                        "level III/IV nodes, 160-180 mm below the brain; needs --size full)")
    p.add_argument("--dm-signal", dest="dm_signal", default="peritumoral_texture",
                   choices=["peritumoral_texture", "tumour_shape", "tumour_heterogeneity"],
                   help="image property that carries the distant-metastasis signal (default peritumoral_texture)")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that already holds a cohort")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hnc_core import schema
    from hnc_core.synth import generate_cohort

    out = Path(args.out_dir)
    if (out / schema.CLINICAL_CSV_NAME).exists() and not args.overwrite:
        print(f"error: {out} already holds a cohort ({schema.CLINICAL_CSV_NAME}); pass --overwrite to replace it")
        return 1
    t0 = time.perf_counter()
    truth = generate_cohort(out, n=args.n, seed=args.seed, size=args.size,
                           primary_site=args.primary_site, dm_signal=args.dm_signal)
    dt = time.perf_counter() - t0
    print(f"wrote {len(truth)} patients to {out} in {dt:.1f} s "
          f"(relapse rate {truth.event_time_days.le(truth.censor_time_days).mean():.0%}, "
          f"DM prevalence {(truth.u_dm < truth.true_dm_probability).mean():.0%})")
    return 0
