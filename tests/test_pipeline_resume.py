"""Resume by fingerprint: a rerun redoes exactly the stages whose inputs changed, and says why.

The planning test uses the real stage modules' declared inputs; the runner test runs the real
``validate`` and ``report`` stages on the tiny cohort (model stages left out with ``skip``), so it is fast.
"""

from __future__ import annotations

import dataclasses
import json
import os

from hnc_petct.pipeline.context import RunOptions
from hnc_petct.pipeline.fingerprint import cohort_identity
from hnc_petct.pipeline.runner import STAGES, plan_stages, run_pipeline

MODEL_STAGES = ("segmentation", "rfs", "dm")


def _finished(plan: dict, device: str = "cpu") -> dict:
    """Run-state records as a run with ``plan`` would have left them (every stage done)."""
    return {name: {"status": "done", "seconds": 1.0, "outputs": {}, "fingerprint": fp, "device": device}
            for name, (fp, _) in plan.items()}


def test_changed_image_size_redoes_exactly_rfs_dm_and_report(tiny_cohort):
    cid = cohort_identity(tiny_cohort)
    before = RunOptions(rfs_image_size=32, dm_image_size=32)
    records = _finished(plan_stages({}, before, cid))
    assert all(r is None for _, r in plan_stages(records, before, cid).values())  # nothing changed: all reused
    after = dataclasses.replace(before, rfs_image_size=96, dm_image_size=96)
    reasons = {k: r for k, (_, r) in plan_stages(records, after, cid).items()}
    assert {k for k, r in reasons.items() if r} == {"rfs", "dm", "report"}
    assert "option:rfs_image_size 32 -> 96" in reasons["rfs"]
    assert "option:dm_image_size 32 -> 96" in reasons["dm"]
    assert reasons["report"] == "upstream rfs, dm redone"


def test_predicted_masks_make_dm_depend_on_segmentation(tiny_cohort):
    cid = cohort_identity(tiny_cohort)
    opts = RunOptions(dm_masks="predicted")
    records = _finished(plan_stages({}, opts, cid))
    reasons = {k: r for k, (_, r) in plan_stages(records, opts, cid, force=("segmentation",)).items()}
    assert {k for k, r in reasons.items() if r} == {"segmentation", "dm", "report"}
    assert reasons["dm"] == "upstream segmentation redone"
    # with label masks a redone segmentation leaves DM alone
    opts = RunOptions(dm_masks="label")
    records = _finished(plan_stages({}, opts, cid))
    reasons = {k: r for k, (_, r) in plan_stages(records, opts, cid, force=("segmentation",)).items()}
    assert {k for k, r in reasons.items() if r} == {"segmentation", "report"}


def test_interrupted_and_failed_stages_are_redone(tiny_cohort):
    cid = cohort_identity(tiny_cohort)
    opts = RunOptions()
    records = _finished(plan_stages({}, opts, cid))
    records["rfs"]["status"] = "running"  # what a killed run leaves behind
    records["dm"]["status"] = "failed"
    reasons = {k: r for k, (_, r) in plan_stages(records, opts, cid).items()}
    assert reasons["rfs"] == "interrupted earlier" and reasons["dm"] == "failed earlier"
    assert reasons["validate"] is None and reasons["segmentation"] is None


def test_runner_redoes_stale_stages_and_records_device(cohort_copy, tmp_path, capsys):
    out = tmp_path / "out"
    opts = RunOptions(skip=MODEL_STAGES, device="cpu")
    state = run_pipeline(cohort_copy, out, opts)
    assert {k for k, v in state["stages"].items() if v["status"] == "done"} == {"validate", "report"}
    assert all(v["device"] == "cpu" and v["fingerprint"]["cohort"] for v in state["stages"].values())
    first = {k: v["finished_at"] for k, v in state["stages"].items()}
    capsys.readouterr()

    run_pipeline(cohort_copy, out, opts)  # unchanged: nothing redone
    log = capsys.readouterr().out
    assert "validate: done earlier" in log and "report: done earlier" in log

    # a cohort file rewritten -> validate redone (cohort changed), report redone (upstream)
    clinical = next(p for p in cohort_copy.iterdir() if p.suffix == ".csv")
    st = clinical.stat()
    os.utime(clinical, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    run_pipeline(cohort_copy, out, opts)
    log = capsys.readouterr().out
    assert "validate: running (inputs changed: cohort changed)" in log
    assert "report: running (upstream validate redone)" in log
    saved = json.loads((out / "run_state.json").read_text())["stages"]
    assert saved["validate"]["reason"] == "inputs changed: cohort changed"
    assert saved["validate"]["fingerprint"]["cohort"] == cohort_identity(cohort_copy)
    assert saved["report"]["finished_at"] >= first["report"]

    run_pipeline(cohort_copy, out, opts, force=("report",))  # --force STAGE redoes only that one
    log = capsys.readouterr().out
    assert "validate: done earlier" in log and "report: running (--force)" in log


def test_every_stage_declares_its_inputs():
    import importlib

    order = list(STAGES)
    for name, module in STAGES.items():
        inputs = importlib.import_module(module).inputs(RunOptions(dm_masks="predicted"))
        assert set(inputs.upstream) <= set(order[: order.index(name)])  # only earlier stages
        assert all(hasattr(RunOptions(), o) for o in inputs.options)
