"""CLI: ``python -m survival_head.radiomics COHORT CACHE [--workers N] [--dask] [--scheduler ADDR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hnc_core.cli_args import add_underscore_aliases
from hnc_core.io import write_csv_atomic
from survival_head.radiomics.cohort import extract_cohort


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m survival_head.radiomics", description=__doc__)
    ap.add_argument("cohort_dir")
    ap.add_argument("cache_dir")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dask", action="store_true", help="run on a local Dask cluster of --workers processes")
    ap.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    ap.add_argument("--mask-dir", default=None, help="predicted masks <PatientID>.nii.gz on the CT grid")
    ap.add_argument("--params", default=None, help="params YAML (default: shipped full config; 'fast')")
    ap.add_argument("--ring-mm", type=float, default=8.0)
    ap.add_argument("--gtvp-only", action="store_true")
    ap.add_argument("--out", default=None, help="CSV of the feature table (default CACHE/features.csv)")
    add_underscore_aliases(ap)
    a = ap.parse_args(argv)
    df = extract_cohort(a.cohort_dir, a.cache_dir, a.workers, a.scheduler, a.mask_dir, params=a.params,
                        include_nodes=not a.gtvp_only, ring_mm=a.ring_mm, use_dask=a.dask)
    out = Path(a.out) if a.out else Path(a.cache_dir) / "features.csv"
    write_csv_atomic(df, out, index=True)
    for pid, msg in sorted(df.attrs.get("errors", {}).items()):
        print(f"FAILED {msg}", file=sys.stderr)
    print(f"{len(df)} patients x {df.shape[1]} features -> {out}")
    return 1 if df.attrs.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
