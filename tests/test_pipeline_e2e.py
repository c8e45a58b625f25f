"""The main job end to end on a very small synthetic cohort, through the real CLI.

One session-scoped run (`hnc-petct run`, all stages, tiny budgets); the tests check the report against
the per-stage outputs, resumability, and that the HTML renders in headless Chromium.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hnc_petct.pipeline.report import fmt

BIN = Path(sys.executable).parent
UNLABELLED = "HGJ-004"  # no relapse, no DM in the seed-2 cohort
ARGS = ["--seg-trainer", "HecMambaTrainer_2epochs_10iters", "--n-folds", "3", "--max-epochs", "1",
        "--image-size", "32", "--radiomics-params", "fast"]


def _run(cohort: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "hnc-petct"), "run", str(cohort), str(out), *ARGS, *extra],
                          capture_output=True, text=True, timeout=1200)
    return proc, time.perf_counter() - t0


@pytest.fixture(scope="session")
def main_job(tmp_path_factory):
    from hnc_core.synth import generate_cohort

    root = tmp_path_factory.mktemp("main_job")
    cohort = root / "cohort"
    generate_cohort(cohort, n=12, seed=2, progress=False)  # 5 relapses, 4 DM: enough for 3 folds
    (cohort / UNLABELLED / f"{UNLABELLED}.nii.gz").unlink()  # -> predicted (imagesTs), not evaluated
    proc, seconds = _run(cohort, root / "out")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return {"cohort": cohort, "out": root / "out", "stdout": proc.stdout, "seconds": seconds}


def _state(out: Path) -> dict:
    return json.loads((out / "run_state.json").read_text())


def _md_row(md: str, first_cell: str, section: str | None = None) -> list[str]:
    if section:
        md = md.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


@pytest.mark.slow
def test_every_stage_finished_with_outputs(main_job):
    st = _state(main_job["out"])["stages"]
    assert [k for k, v in st.items() if v["status"] == "done"] == ["validate", "segmentation", "rfs", "dm", "report"]
    seg, rfs, dm = st["segmentation"]["outputs"], st["rfs"]["outputs"], st["dm"]["outputs"]
    assert seg["n_eval"] >= 2
    assert [p.name for p in Path(seg["predictions_dir"]).glob("*.nii.gz")] == [f"{UNLABELLED}.nii.gz"]
    assert st["validate"]["outputs"]["summary"]["usable"] == {"images": 12, "segmentation": 11, "rfs": 12, "dm": 12}
    assert rfs["n_predictions"] == 12 and {r["model"] for r in rfs["ablation"]} == {"clinical-only", "image-only", "fusion"}
    assert "masks from labels" in dm["setting"] and dm["n_patients"] == 11
    assert any(UNLABELLED in str(e) for e in dm["errors"])  # reported, not silently dropped
    preds = json.loads(Path(rfs["predictions_json"]).read_text())
    assert {"PatientID", "Prediction"} == set(preds[0])


@pytest.mark.slow
def test_report_numbers_match_stage_outputs(main_job):
    out = main_job["out"]
    md = (out / "report" / "index.md").read_text()
    html = (out / "report" / "index.html").read_text()
    st = _state(out)["stages"]
    seg_summary = json.loads(Path(st["segmentation"]["outputs"]["summary_json"]).read_text())
    row = _md_row(md, "GTVp")
    assert row[1] == fmt(seg_summary["per_class"]["GTVp"]["mean_dsc"])
    abl = json.loads(Path(st["rfs"]["outputs"]["ablation_json"]).read_text())
    assert _md_row(md, "clinical-only")[1] == fmt(abl["modes"]["clinical"]["oof"]["harrell_c"]["estimate"])
    analysis = json.loads(Path(st["dm"]["outputs"]["analysis_json"]).read_text())
    full = analysis["subgroup_model"]
    assert _md_row(md, full)[1] == fmt(analysis["ablation"][full]["auc"])
    for stage in ("validate", "segmentation", "rfs", "dm"):
        row = _md_row(md, stage, section="Timings")
        assert row[2] == st[stage]["device"] == "cpu" and row[3] == fmt(st[stage]["seconds"])
    # the HTML twin carries the same numbers
    assert f"<td>{fmt(analysis['ablation'][full]['auc'])}</td>" in html
    assert "nnUNetv2_train" in md and "monai.bundle run" in md


@pytest.mark.slow
def test_report_images_exist_and_render(main_job):
    from hnc_petct.pipeline.browser_check import find_chromium, probe_images

    html = main_job["out"] / "report" / "index.html"
    srcs = re.findall(r"<img src='([^']+)'", html.read_text())
    assert len(srcs) >= 3  # overlays + KM + ROC
    for src in srcs:
        assert (html.parent / src).is_file(), src
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (make test installs it where it can)")
    rows = probe_images(html)
    assert [r["src"] for r in rows] == srcs
    assert all(r["complete"] and r["width"] > 100 and r["height"] > 100 for r in rows), rows


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_force_redoes_one(main_job):
    before = _state(main_job["out"])["stages"]
    proc, seconds = _run(main_job["cohort"], main_job["out"], "--force", "report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage in ("validate", "segmentation", "rfs", "dm"):
        assert f"{stage}: done earlier" in proc.stdout
    assert "[5/5] report: running" in proc.stdout
    after = _state(main_job["out"])["stages"]
    assert after["dm"]["finished_at"] == before["dm"]["finished_at"]
    assert after["report"]["finished_at"] >= before["report"]["finished_at"]
    assert seconds < main_job["seconds"] / 3


@pytest.mark.slow
def test_export_bundles_gives_the_clinic_app_three_trained_bundles(main_job, tmp_path):
    """`hnc-petct export-bundles RUN_OUT DIR` assembles the run's trained models into the three bundle folders
    the clinic app (`-m DIR`) resolves; it never overwrites an existing folder."""
    from hnc_petct.clinic_app.bundles import SLOTS, resolve

    dest = tmp_path / "bundles"
    proc = subprocess.run([str(BIN / "hnc-petct"), "export-bundles", str(main_job["out"]), str(dest)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for slot in SLOTS:
        info = resolve(slot, dest)
        assert info.path == (dest / slot.folder).resolve() and info.model_file.is_file()
    seg = json.loads((dest / "hecmamba_petct_segmentation" / "models" / "manifest.json").read_text())
    assert "HecMambaTrainer_2epochs_10iters" in json.dumps(seg)  # the fold the run trained
    for name in ("hecktor_rfs_fusion", "hnscc_distant_metastasis"):
        shipped = (main_job["out"] / ("rfs" if "rfs" in name else "dm") / "models" / "model.ts").read_bytes()
        assert (dest / name / "models" / "model.ts").read_bytes() == shipped
    assert not dest.with_name("bundles.partial").exists()
    again = subprocess.run([str(BIN / "hnc-petct"), "export-bundles", str(main_job["out"]), str(dest)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
