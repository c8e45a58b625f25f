"""How often the main job reads the cohort and decodes one patient's CT, counted across all its processes.

    python benchmarks/bench_count_reads.py [--repo DIR] [--keep OUT]

Runs ``hnc-petct run`` (segmentation left out: nnU-Net reads its own converted copy) on a 12-patient synthetic
cohort with tiny budgets. A ``sitecustomize`` put on ``PYTHONPATH`` wraps ``hnc_core.cohort.load_cohort``,
``SimpleITK.ReadImage``, ``SimpleITK.ImageFileReader.Execute`` and ``nibabel.load`` in every Python process
the run starts (bundles, radiomics workers) and appends one line per call; the script prints the totals per
stage. ``--repo`` points at another checkout (e.g. an export of an older commit) to compare.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HOOK = textwrap.dedent('''
    import os, sys
    _LOG = os.environ["HNC_COUNT_LOG"]
    _CT = os.environ["HNC_COUNT_CT"]

    def _note(kind, path=""):
        with open(_LOG, "a") as fh:
            fh.write(f"{os.getpid()}\\t{kind}\\t{path}\\n")

    def _wrap(obj, name, kind, path_of):
        orig = getattr(obj, name)
        def wrapper(*a, **k):
            p = str(path_of(a, k) or "")
            if kind == "cohort" or p.endswith(_CT):
                _note(kind, p)
            return orig(*a, **k)
        setattr(obj, name, wrapper)

    try:
        import SimpleITK as sitk
        import nibabel
        _wrap(sitk, "ReadImage", "ct", lambda a, k: a[0] if a else k.get("fileName"))
        _orig_exec = sitk.ImageFileReader.Execute
        def _exec(self, *a, **k):
            if str(self.GetFileName()).endswith(_CT):
                _note("ct", self.GetFileName())
            return _orig_exec(self, *a, **k)
        sitk.ImageFileReader.Execute = _exec
        _wrap(nibabel, "load", "ct", lambda a, k: a[0] if a else k.get("filename"))
        import hnc_core.cohort as _c
        _wrap(_c, "load_cohort", "cohort", lambda a, k: a[0] if a else k.get("root"))
    except Exception as exc:  # the counted run must not break because of the hook
        print("count hook not installed:", exc, file=sys.stderr)
''')

ARGS = ["--skip", "segmentation", "--n-folds", "3", "--max-epochs", "1", "--image-size", "32",
        "--radiomics-params", "fast", "--workers", "1"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--keep", default=None, help="output folder to keep (default: a temporary one)")
    a = ap.parse_args()
    repo = Path(a.repo).resolve()
    work = Path(a.keep or tempfile.mkdtemp(prefix="count_reads_"))
    work.mkdir(parents=True, exist_ok=True)
    hook = work / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    cohort = work / "cohort"
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{repo}", "HNC_BUNDLES_DIR": str(repo / "bundles")}
    if not cohort.is_dir():
        subprocess.run([sys.executable, "-c", "from hnc_core.synth import generate_cohort; import sys; "
                        "generate_cohort(sys.argv[1], n=12, seed=2, progress=False)", str(cohort)], env=env, check=True)
    pid = sorted(p.name for p in cohort.iterdir() if p.is_dir() and not p.name.startswith("."))[0]
    log = work / "reads.tsv"
    log.write_text("")
    env.update({"HNC_COUNT_LOG": str(log), "HNC_COUNT_CT": f"{pid}__CT.nii.gz"})
    # stage boundaries from the run's own progress lines
    proc = subprocess.Popen([sys.executable, "-m", "hnc_petct", "run", str(cohort), str(work / "out"), *ARGS],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    per_stage: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    stage, seen = "start", 0
    for line in proc.stdout:
        lines = log.read_text().splitlines()
        for row in lines[seen:]:
            per_stage[stage][row.split("\t")[1]] += 1
        seen = len(lines)
        if line.startswith("[") and "] " in line:
            stage = line.split("] ", 1)[1].split(":", 1)[0]
        sys.stdout.write(line)
    proc.wait()
    for row in log.read_text().splitlines()[seen:]:
        per_stage[stage][row.split("\t")[1]] += 1
    table = {s: dict(c) for s, c in per_stage.items() if c}
    total = collections.Counter()
    for c in per_stage.values():
        total.update(c)
    print(json.dumps({"repo": str(repo), "patient": pid, "per_stage": table,
                      "cohort_reads": total["cohort"], "ct_decodes_of_one_patient": total["ct"],
                      "exit": proc.returncode}, indent=1))
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
