"""Stage 5: ``OUT/report/index.html`` and its Markdown twin ``index.md`` from the stages' outputs."""

from __future__ import annotations

import os
import platform
import shutil
from importlib import metadata
from pathlib import Path

from hnc_core.io import write_text_atomic
from hnc_petct.pipeline.context import StageContext
from hnc_petct.pipeline.fingerprint import StageInputs
from hnc_petct.pipeline.published import RFS_REFERENCE, SEG_REFERENCE
from hnc_petct.pipeline.report import Section, fmt, to_html, to_markdown

PACKAGES = ["hnc-petct", "torch", "monai", "nnunetv2", "scikit-survival", "scikit-learn", "pyradiomics-bhklab",
            "SimpleITK", "numpy", "dask"]


def inputs(options) -> StageInputs:
    """Rebuilt whenever a model stage was redone (or the skipped set changed)."""
    return StageInputs(options=("skip",), upstream=("validate", "segmentation", "rfs", "dm"))


def run(ctx: StageContext) -> dict:
    rdir = ctx.stage_dir("report")
    st = ctx.state.stages
    sections = [_cohort_section(ctx, st)]
    for name, builder in (("segmentation", _seg_section), ("rfs", _rfs_section), ("dm", _dm_section)):
        sec = Section(_TITLES[name])
        info = st.get(name)
        if name in ctx.options.skip or info is None:
            sec.p("Not run (left out with --skip, or not reached).")
        elif info["status"] != "done":
            sec.p(f"This stage failed: {info.get('error', '').splitlines()[0] if info.get('error') else ''} "
                  f"(full message in run_state.json).")
        else:
            builder(sec, info["outputs"], rdir, ctx.out_dir)
        sections.append(sec)
    sections.append(_timing_section(st))
    sections.append(_provenance_section(ctx))
    title = "hnc-petct report"
    write_text_atomic(rdir / "index.html", to_html(title, sections))
    write_text_atomic(rdir / "index.md", to_markdown(title, sections))
    return {"html": str(rdir / "index.html"), "markdown": str(rdir / "index.md")}


_TITLES = {"segmentation": "Segmentation (HecMamba, nnU-Net v2)", "rfs": "Recurrence-free survival (RFS fusion)",
           "dm": "Distant metastasis (Swin + radiomics + clinical)"}


def _asset(src: str | None, rdir: Path, out_dir: Path) -> str | None:
    """Copy a stage's PNG into report/assets and return its path relative to the report folder."""
    if not src:
        return None
    p = Path(src)
    p = p if p.is_absolute() else out_dir / p
    if not p.is_file():
        return None
    dst = rdir / "assets" / f"{p.parent.name}_{p.name}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(p, dst)
    return os.path.relpath(dst, rdir)


def _rows(table: list[dict]) -> tuple[list[str], list[list]]:
    cols = list(table[0]) if table else []
    return cols, [[r.get(c) for c in cols] for r in table]


def _cohort_section(ctx: StageContext, st: dict) -> Section:
    sec = Section("Cohort")
    v = st.get("validate", {})
    if v.get("status") != "done":
        return sec.p("Validation did not finish; see run_state.json.")
    s = v["outputs"]["summary"]
    sec.p(f"Cohort folder: {ctx.cohort_dir}. {s['n_patients']} patients, {s['n_with_label']} with labels, "
          f"{s['n_clinical_rows']} clinical rows; {s['n_errors']} errors and {s['n_warnings']} warnings "
          "(per-patient table in validate/validation.txt).")
    sec.table(["task", "usable patients"], list(s["usable"].items()), "Patients usable per task")
    return sec


def _seg_section(sec: Section, out: dict, rdir: Path, out_dir: Path) -> None:
    sec.p(f"Trainer {out.get('trainer')} on {out.get('dataset')}, fold {out.get('fold')}: "
          f"{out.get('n_train')} training and {out.get('n_eval')} held-out validation cases "
          f"({out.get('setting', '')}). Metrics on the held-out cases.")
    cols, rows = _rows(out.get("per_class", []))
    sec.table(cols, rows, "Per-class mean over held-out cases (DSC, HD95 mm, Surface Dice)")
    sec.table(["metric", "value"], [[k, v] for k, v in out.get("hecktor", {}).items()], "HECKTOR aggregate metrics")
    sec.table(["published reference", "DSC"], [[r["source"], r["value"]] for r in SEG_REFERENCE])
    for png in out.get("overlays", []):
        rel = _asset(png, rdir, out_dir)
        if rel:
            sec.image(rel, Path(png).stem)


def _rfs_section(sec: Section, out: dict, rdir: Path, out_dir: Path) -> None:
    sec.p(f"{out.get('setting', '')}." + _oracle_text("C-index of the true log-hazard", out.get("oracle_c_index")))
    cols, rows = _rows(out.get("ablation", []))
    sec.table(cols, rows, "Out-of-fold C-index with bootstrap 95% CI (the paper's Table 3 ablation)")
    sec.table(["published reference", "C-index"], [[r["source"], r["value"]] for r in RFS_REFERENCE])
    rel = _asset(out.get("km_png"), rdir, out_dir)
    if rel:
        sec.image(rel, f"Kaplan-Meier by predicted risk group (log-rank p = {fmt(out.get('logrank_p'), 4)})")


def _dm_section(sec: Section, out: dict, rdir: Path, out_dir: Path) -> None:
    sec.p(f"{out.get('setting', '')}." + _oracle_text("AUC of the true DM probability", out.get("oracle_auc")))
    cols, rows = _rows(out.get("ablation", []))
    sec.table(cols, rows, "Out-of-fold modality ablation (AUC with bootstrap 95% CI; threshold from training folds)")
    cols, rows = _rows(out.get("subgroups", []))
    if rows:
        sec.table(cols, rows, "Stratified analysis (fusion model)")
    rel = _asset(out.get("roc_png"), rdir, out_dir)
    if rel:
        sec.image(rel, "ROC of the out-of-fold predictions")


def _oracle_text(what: str, value) -> str:
    if value is None:
        return ""
    return f" Oracle {what} on the same patients (synthetic cohort): {fmt(value)}."


def _timing_section(st: dict) -> Section:
    rows = [[k, v.get("status"), v.get("device"), v.get("seconds"), v.get("reason")]
            for k, v in st.items() if k != "report"]
    return Section("Timings").table(["stage", "status", "device", "seconds", "why it ran"], rows)


def _provenance_section(ctx: StageContext) -> Section:
    sec = Section("Versions and commands")
    vers = []
    for pkg in PACKAGES:
        try:
            vers.append([pkg, metadata.version(pkg)])
        except metadata.PackageNotFoundError:
            vers.append([pkg, "not installed"])
    vers.insert(0, ["python", platform.python_version()])
    sec.table(["package", "version"], vers)
    cmds = [f"# {c['stage']}\n{c['command']}" for c in ctx.state.commands]
    opts = ctx.state.meta.get("options", {})
    sec.p(f"Options: {opts}")
    sec.code("\n".join(cmds) if cmds else "(no external commands)")
    return sec
