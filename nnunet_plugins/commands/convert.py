"""``hnc-petct nnunet-convert``: HECKTOR layout -> nnUNet_raw/DatasetXXX_HECKTOR."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cohort_dir", metavar="HECKTOR_ROOT", help="cohort folder in the HECKTOR layout")
    p.add_argument("--dataset-id", type=int, default=501, help="nnU-Net dataset id (default 501)")
    p.add_argument("--nnunet-raw", default=None, help="nnUNet_raw folder (default: $nnUNet_raw)")
    p.add_argument("--name", default="HECKTOR", help="dataset name suffix (default HECKTOR)")


def main(args: argparse.Namespace) -> int:
    import sys

    from hnc_core.cohort import CohortError
    from nnunet_plugins.convert import ConversionError, convert_cohort

    try:
        out = convert_cohort(args.cohort_dir, args.dataset_id, args.nnunet_raw, args.name, progress=sys.stderr.isatty())
    except (ConversionError, CohortError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
