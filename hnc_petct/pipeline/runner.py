"""Run the stages in order, reusing those whose input fingerprint is unchanged; one progress line per stage."""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from pathlib import Path

from hnc_petct.pipeline.context import RunOptions, StageContext
from hnc_petct.pipeline.fingerprint import changed_keys, cohort_identity, describe_change, stage_fingerprint
from hnc_petct.pipeline.state import RunState

log = logging.getLogger("hnc_petct.pipeline")

# name -> module with ``inputs(options) -> StageInputs`` and ``run(ctx) -> dict`` (outputs). Order matters; names are CLI interface (--force).
STAGES: dict[str, str] = {
    "validate": "hnc_petct.pipeline.stage_validate",
    "segmentation": "hnc_petct.pipeline.stage_segmentation",
    "rfs": "hnc_petct.pipeline.stage_rfs",
    "dm": "hnc_petct.pipeline.stage_dm",
    "report": "hnc_petct.pipeline.stage_report",
}


def run_pipeline(cohort_dir: str | Path, out_dir: str | Path, options: RunOptions | None = None,
                 force: tuple[str, ...] = ()) -> dict:
    """Run every stage whose inputs changed since it last finished (and those in ``force``).

    Each stage's record in ``run_state.json`` holds the fingerprint of its inputs (its options, the
    package version, the cohort files' identity, the fingerprints of the stages it consumes); a stage is
    reused only when that fingerprint is unchanged and it finished. A redone stage's downstream stages are
    redone too; one progress line per stage says why. A failing stage is recorded with its error and the
    run goes on with the stages that do not depend on it (the report shows what failed). Returns the run
    state as a dict.
    """
    options = options or RunOptions()
    unknown = set(force) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {list(STAGES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = RunState.load(out)
    state.meta.update({"cohort_dir": str(Path(cohort_dir).resolve()), "out_dir": str(out.resolve()),
                       "options": vars(options) | {"skip": list(options.skip)}, "device": options.device})
    ctx = StageContext(Path(cohort_dir), out, options, state)
    plan = plan_stages(state.stages, options, cohort_identity(cohort_dir), force)
    t_all = time.perf_counter()
    for i, (name, module) in enumerate(STAGES.items(), 1):
        prefix = f"[{i}/{len(STAGES)}] {name}"
        if name not in plan:
            print(f"{prefix}: skipped (--skip)", flush=True)
            continue
        fp, reason = plan[name]
        prev = state.stages.get(name, {})
        if reason is None:
            ctx.outputs[name] = prev["outputs"]
            print(f"{prefix}: done earlier ({prev['seconds']:.0f} s), inputs unchanged, skipping", flush=True)
            continue
        log.info("stage %s: redoing (%s)", name, reason)
        print(f"{prefix}: running ({reason}) ...", flush=True)
        ctx.previous, ctx.fingerprint = prev, fp
        state.record(name, "running", 0.0, fingerprint=fp, device=options.device, reason=reason)
        t0 = time.perf_counter()
        try:
            outputs = importlib.import_module(module).run(ctx)
        except Exception as exc:  # noqa: BLE001 - a failed stage must not lose the others
            dt = time.perf_counter() - t0
            log.error("stage %s failed: %s", name, exc)
            log.debug("%s", traceback.format_exc())
            state.record(name, "failed", dt, error=str(exc)[:4000], fingerprint=fp, device=options.device,
                         reason=reason)
            print(f"{prefix}: FAILED after {dt:.0f} s: {str(exc).splitlines()[0]}", flush=True)
            continue
        dt = time.perf_counter() - t0
        ctx.outputs[name] = outputs
        state.record(name, "done", dt, outputs, fingerprint=fp, device=options.device, reason=reason)
        print(f"{prefix}: done in {dt:.0f} s", flush=True)
    total = time.perf_counter() - t_all
    state.meta["last_run_seconds"] = round(total, 1)
    state.save()
    print(f"total {total:.0f} s ({total / 60:.1f} min); report: {out / 'report' / 'index.html'}", flush=True)
    return {"meta": state.meta, "stages": state.stages}


def plan_stages(records: dict, options: RunOptions, cohort_id: str, force=()) -> dict[str, tuple[dict, str | None]]:
    """``{stage: (fingerprint, reason to run or None)}`` for every stage not in ``options.skip``.

    ``records``: the stages of the previous ``run_state.json``. Every stage with a reason is redone,
    so its downstream stages get ``upstream X redone``.
    """
    plan, fingerprints, redone = {}, {}, set()
    for name, module in STAGES.items():
        if name in options.skip:
            continue
        inputs = importlib.import_module(module).inputs(options)
        fp = fingerprints[name] = stage_fingerprint(inputs, options, cohort_id, fingerprints)
        reason = _stale_reason(name, records.get(name, {}), fp, inputs, force, redone)
        if reason is not None:
            redone.add(name)
        plan[name] = (fp, reason)
    return plan


def _stale_reason(name: str, prev: dict, fp: dict, inputs, force, redone: set[str]) -> str | None:
    """Why ``name`` must run now, or None when its finished record is still valid."""
    if name in force:
        return "--force"
    status = prev.get("status")
    if status is None:
        return "not run before"
    if status != "done":
        return f"{'interrupted' if status == 'running' else status} earlier"
    upstream_redone = [u for u in inputs.upstream if u in redone]
    if upstream_redone:
        return f"upstream {', '.join(upstream_redone)} redone"
    if changed_keys(prev.get("fingerprint"), fp):
        return "inputs changed: " + describe_change(prev.get("fingerprint"), fp)
    return None
