"""Inference time per patient of a bundle: ``python -m monai.bundle run inference.json`` vs the MONAI Deploy
app (stock ``MonaiBundleInferenceOperator``), same patients, one run each, measured side by side.

    python benchmarks/bench_bundle_serving.py --bundle BUNDLE --cohort COHORT

``BUNDLE`` is a trained copy of ``bundles/hecktor_rfs_fusion`` (``--kind rfs``) or ``bundles/hnscc_distant_metastasis``
(``--kind dm``; both paths extract the radiomics, the CLI into a fresh cache) with ``models/model.ts``, or of
``bundles/hecmamba_petct_segmentation`` (``--kind seg``: ``models/`` exported from an nnU-Net fold; ``COHORT`` an
nnU-Net image folder, CT ``_0000`` + PET on the CT grid ``_0001``; label maps compared voxel by voxel); ``COHORT`` a
HECKTOR-layout folder whose PET is already on the CT grid (RFS) (what a DICOM front end hands to the Deploy app; the script
writes such a copy when ``--resample-pet`` is given). Both commands run in subprocesses (the Deploy app
under ``ulimit -s 32768``); wall time includes start-up, model loading, reading and preprocessing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(cmd: str) -> float:
    t = time.perf_counter()
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--kind", choices=["rfs", "dm", "seg"], default="rfs")
    p.add_argument("--cohort", required=True, type=Path)
    p.add_argument("--resample-pet", action="store_true", help="copy the cohort with PET resampled onto the CT grid")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cohort = a.cohort
        if a.resample_pet:
            import SimpleITK as sitk

            from hnc_petct.deploy.bundle_app import pet_on_ct

            cohort = tmp / "cohort"
            shutil.copytree(a.cohort, cohort)
            for pt in cohort.glob("*/*__PT.nii.gz"):
                ct = sitk.ReadImage(str(pt).replace("__PT", "__CT"), sitk.sitkFloat32)
                sitk.WriteImage(pet_on_ct(ct, sitk.ReadImage(str(pt), sitk.sitkFloat32)), str(pt))
        py = sys.executable
        extra = f" --radiomics_cache {tmp}/fresh_cache" if a.kind == "dm" else ""  # both paths extract radiomics
        extra += "" if a.kind == "seg" else " --batch_size 1 --progress False"
        cli = _timed(f"{py} -W ignore -m monai.bundle run --config_file {a.bundle}/configs/inference.json "
                     f"--dataset_dir {cohort} --output_dir {tmp}/cli{extra}")
        model = a.bundle if a.kind == "seg" else f"{a.bundle}/models/model.ts"
        dep = _timed(f"ulimit -s 32768 && {py} -W ignore -m hnc_petct.deploy.bundle_app {a.kind} "
                     f"--model {model} --cohort {cohort} --out {tmp}/deploy{'' if a.kind == 'seg' else '.json'}")
        if a.kind == "seg":
            import numpy as np
            import SimpleITK as sitk

            cases = sorted((tmp / "cli").glob("*.nii.gz"))
            n = len(cases)
            agree = [float(np.mean(sitk.GetArrayFromImage(sitk.ReadImage(str(c))) ==
                                   sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "deploy" / c.name)))))
                     for c in cases]
            print(json.dumps({"patients": n, "bundle_cli_s_per_patient": round(cli / n, 3),
                              "deploy_app_s_per_patient": round(dep / n, 3), "deploy_over_cli": round(dep / cli, 2),
                              "min_voxel_agreement": min(agree)}))
            return
        if a.kind == "dm":
            import pandas as pd

            a_ = pd.read_csv(tmp / "cli" / "predictions.csv")["dm_probability"].tolist()
        else:
            a_ = [r["Prediction"] for r in json.loads((tmp / "cli" / "predictions.json").read_text())]
        n = len(a_)
        b_ = [r["Prediction"] for r in json.loads((tmp / "deploy.json").read_text())]
        print(json.dumps({"patients": n, "bundle_cli_s_per_patient": round(cli / n, 3),
                          "deploy_app_s_per_patient": round(dep / n, 3), "deploy_over_cli": round(dep / cli, 2),
                          "max_abs_diff": max(abs(x - y) for x, y in zip(a_, b_))}))


if __name__ == "__main__":
    main()
