"""``hnc-petct seg-evaluate``: DSC, HD95, surface Dice, HECKTOR aggregated DSC, GTVn detection F1."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred_dir", metavar="PRED_DIR", help="predicted label maps (*.nii.gz, same names as GT); "
                   "every prediction is scored")
    p.add_argument("gt_dir", metavar="GT_DIR", help="ground-truth label maps (1 GTVp, 2 GTVn)")
    p.add_argument("--tolerance-mm", type=float, default=2.0, help="surface Dice tolerance in mm (default 2)")
    missing = p.add_mutually_exclusive_group()
    missing.add_argument("--require-all", action="store_true",
                         help="fail if a ground-truth case has no prediction (default: score it as an empty "
                              "prediction, as the challenge does)")
    missing.add_argument("--skip-missing", action="store_true",
                         help="score only the predicted cases, e.g. one fold's validation/ folder against the "
                              "whole labelsTr (earlier default)")
    p.add_argument("--out", default=None, help="folder for per_case.csv and summary.json (default PRED_DIR)")


def main(args: argparse.Namespace) -> int:
    import json
    import sys

    from hnc_core.guards import OutputPathError
    from nnunet_plugins.evaluate import evaluate_folder

    try:
        summary = evaluate_folder(args.pred_dir, args.gt_dir, args.out, args.tolerance_mm,
                                  progress=sys.stderr.isatty(), require_all=args.require_all,
                                  missing_as_empty=not args.skip_missing)
    except OutputPathError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str))
    for e in summary.get("errors", []):
        print(f"error: case {e['case']} not scored: {e['error']}", file=sys.stderr)
    return 1 if summary.get("errors") else 0
