"""``hnc-petct validate``: per-patient problem table, summary, optional JSON."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cohort_dir", metavar="COHORT_DIR", help="cohort folder in the HECKTOR 2025 layout")
    p.add_argument("--clinical-csv", default=None, help="clinical CSV (default: the Task-2 CSV in COHORT_DIR)")
    p.add_argument("--json", dest="json_out", metavar="FILE", default=None,
                   help="also write the report as JSON ('-' for stdout)")
    p.add_argument("--quick", action="store_true", help="check files and CSV only; do not read image contents")


def main(args: argparse.Namespace) -> int:
    import json
    import sys

    from pathlib import Path

    from hnc_core.cohort import CohortError, load_cohort
    from hnc_core.guards import OutputPathError, check_output_file
    from hnc_core.io import write_json_atomic

    if args.json_out and args.json_out != "-":
        try:  # before any work: never over an input, never into the cohort, a writable file path
            inputs = [args.clinical_csv] if args.clinical_csv else []
            check_output_file(args.json_out, inputs=inputs, protected_dirs=[Path(args.cohort_dir)],
                              what="--json report")
        except OutputPathError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        cohort = load_cohort(args.cohort_dir, args.clinical_csv, collect=True,
                             check_images=not args.quick, progress=sys.stderr.isatty())
    except CohortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = cohort.to_dict()
    if args.json_out == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(format_report(report))
        if args.json_out:
            write_json_atomic(args.json_out, report)
            print(f"JSON report written to {args.json_out}")
    return 0 if report["summary"]["usable"]["images"] > 0 else 1


def format_report(report: dict) -> str:
    """Plain-text table: one line per problem, grouped by patient, then the summary."""
    lines = []
    for p in report["cohort_problems"]:
        lines.append(f"  [cohort] {p['severity']:7s} {p['code']:16s} {p['message']}")
    width = max([len(p["PatientID"]) for p in report["patients"]] + [9])
    lines.append(f"{'PatientID':{width}s}  {'usable for':28s}  problems")
    for pat in report["patients"]:
        usable = ",".join(pat["usable_for"]) or "-"
        if not pat["problems"]:
            lines.append(f"{pat['PatientID']:{width}s}  {usable:28s}  ok")
        for i, p in enumerate(pat["problems"]):
            head = f"{pat['PatientID']:{width}s}  {usable:28s}" if i == 0 else " " * (width + 30)
            fname = p["file"].rsplit("/", 1)[-1] if p["file"] else ""
            lines.append(f"{head}  {p['severity']}: {p['code']} ({fname}) {p['message']}")
    s = report["summary"]
    lines.append("")
    lines.append(f"{s['n_patients']} patients, {s['n_with_label']} with labels, {s['n_clinical_rows']} clinical rows; "
                 f"{s['n_errors']} errors, {s['n_warnings']} warnings")
    lines.append("usable: " + ", ".join(f"{k} {v}" for k, v in s["usable"].items()))
    return "\n".join(lines)
