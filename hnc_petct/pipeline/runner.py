"""Run the stages in order, skipping finished ones, with one progress line per stage."""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from pathlib import Path

from hnc_petct.pipeline.context import RunOptions, StageContext
from hnc_petct.pipeline.state import RunState

log = logging.getLogger("hnc_petct.pipeline")

# name -> module with ``run(ctx) -> dict`` (outputs). Order matters; names are CLI interface (--force).
STAGES: dict[str, str] = {
    "validate": "hnc_petct.pipeline.stage_validate",
    "segmentation": "hnc_petct.pipeline.stage_segmentation",
    "rfs": "hnc_petct.pipeline.stage_rfs",
    "dm": "hnc_petct.pipeline.stage_dm",
    "report": "hnc_petct.pipeline.stage_report",
}


def run_pipeline(cohort_dir: str | Path, out_dir: str | Path, options: RunOptions | None = None,
                 force: tuple[str, ...] = ()) -> dict:
    """Run every stage not yet done (and those in ``force``); return the run state as a dict.

    A failing stage is recorded with its error and the run goes on with the stages that do not
    depend on it (the report shows what failed). The report stage always reruns when anything ran.
    """
    options = options or RunOptions()
    unknown = set(force) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {list(STAGES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = RunState.load(out)
    state.meta.update({"cohort_dir": str(Path(cohort_dir).resolve()), "out_dir": str(out.resolve()),
                       "options": vars(options) | {"skip": list(options.skip)}})
    ctx = StageContext(Path(cohort_dir), out, options, state)
    ran_any = False
    t_all = time.perf_counter()
    for i, (name, module) in enumerate(STAGES.items(), 1):
        prefix = f"[{i}/{len(STAGES)}] {name}"
        if name in options.skip:
            print(f"{prefix}: skipped (--skip)", flush=True)
            continue
        if state.is_done(name) and name not in force and not (name == "report" and ran_any):
            ctx.outputs[name] = state.stages[name]["outputs"]
            print(f"{prefix}: done earlier ({state.stages[name]['seconds']:.0f} s), skipping", flush=True)
            continue
        print(f"{prefix}: running ...", flush=True)
        t0 = time.perf_counter()
        try:
            outputs = importlib.import_module(module).run(ctx)
        except Exception as exc:  # noqa: BLE001 - a failed stage must not lose the others
            dt = time.perf_counter() - t0
            log.error("stage %s failed: %s", name, exc)
            log.debug("%s", traceback.format_exc())
            state.record(name, "failed", dt, error=str(exc)[:4000])
            print(f"{prefix}: FAILED after {dt:.0f} s: {str(exc).splitlines()[0]}", flush=True)
            ran_any = True
            continue
        dt = time.perf_counter() - t0
        ctx.outputs[name] = outputs
        state.record(name, "done", dt, outputs)
        ran_any = True
        print(f"{prefix}: done in {dt:.0f} s", flush=True)
    total = time.perf_counter() - t_all
    state.meta["last_run_seconds"] = round(total, 1)
    state.save()
    print(f"total {total:.0f} s ({total / 60:.1f} min); report: {out / 'report' / 'index.html'}", flush=True)
    return {"meta": state.meta, "stages": state.stages}
