"""Stage 1: validate the cohort, keep the usable patients, write the problem table."""

from __future__ import annotations

from hnc_core.cohort import load_cohort
from hnc_petct.commands.validate import format_report
from hnc_core.io import write_json_atomic, write_text_atomic
from hnc_petct.pipeline.context import StageContext, StageError
from hnc_petct.pipeline.fingerprint import StageInputs


def inputs(options) -> StageInputs:
    """Depends on the cohort files only."""
    return StageInputs()


def run(ctx: StageContext) -> dict:
    cohort = load_cohort(ctx.cohort_dir, collect=True, check_images=True, progress=True)
    report = cohort.to_dict()
    d = ctx.stage_dir("validate")
    write_json_atomic(d / "validation.json", report)
    write_text_atomic(d / "validation.txt", format_report(report) + "\n")
    usable = report["summary"]["usable"]
    if usable["images"] == 0:
        raise StageError(f"no usable patient in {ctx.cohort_dir}; see {d / 'validation.txt'}")
    n_bad = sum(1 for p in report["patients"] if any(q["severity"] == "error" for q in p["problems"]))
    print(f"  {report['summary']['n_patients']} patients; usable: " +
          ", ".join(f"{k} {v}" for k, v in usable.items()) + f"; {n_bad} with errors (see validation.txt)")
    return {"summary": report["summary"], "validation_json": str(d / "validation.json"),
            "usable": {t: cohort.usable_ids(t) for t in ("images", "segmentation", "rfs", "dm")}}
