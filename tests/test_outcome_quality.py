"""Quality floors: each outcome model, trained briefly on a small synthetic cohort, must rank unseen patients
in the right direction and well above chance. A negated risk, a 1 - p classifier or a model that learnt
nothing fails here. Floors come from measured distributions over several seeds (see each test's docstring);
each is set clearly below the worst seed and clearly above chance.

Also: RFS ``evaluate()`` with a patient that has images but no outcome row, evaluated on patients that
overlap the training patients (reported, recorded in ``metrics.json``, no crash).
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

RFS_SEED = 1


@pytest.fixture(scope="module")
def rfs_runs(tmp_path_factory):
    """80 training / 60 unseen patients (small grid), 24^3, frozen backbone, 3 folds, 20 epochs."""
    import torch

    from hnc_core.synth import generate_cohort
    from survival_head.rfs.workflows import predict, train_folds

    torch.set_num_threads(1)  # tiny MLPs: one thread is faster than two contending ones
    root = tmp_path_factory.mktemp("rfs_quality")
    generate_cohort(root / "train", n=80, seed=100 + RFS_SEED, progress=False)
    generate_cohort(root / "test", n=60, seed=200 + RFS_SEED, progress=False)
    out = {"root": root}
    for mode in ("fusion", "clinical"):
        train_folds(root / "train", root / mode, image_size=24, max_epochs=20, batch_size=8, n_folds=3, mode=mode,
                    seed=RFS_SEED, freeze_backbone=True, progress=False, cache_dir=root / "cache")
        predict(root / "test", root / mode, root / f"pred_{mode}", cache_dir=root / "cache", progress=False)
        out[mode] = json.loads((root / f"pred_{mode}" / "predictions.json").read_text())
    return out


def _shipped_c(runs, mode) -> tuple[float, float]:
    """Harrell C of the shipped predictions.json risk against the observed relapse order, and the oracle C."""
    from hnc_core import schema
    from hnc_core.synth import load_ground_truth
    from survival_head.evaluation.survival_metrics import harrell_c
    from sksurv.util import Surv

    clin = pd.read_csv(runs["root"] / "test" / schema.CLINICAL_CSV_NAME).set_index(schema.PATIENT_ID)
    pred = pd.DataFrame(runs[mode]).set_index("PatientID")["Prediction"]
    y = Surv.from_arrays(clin.loc[pred.index, schema.RELAPSE].astype(bool), clin.loc[pred.index, schema.RFS])
    truth = load_ground_truth(runs["root"] / "test")
    return harrell_c(y, pred.to_numpy()), harrell_c(y, truth.loc[pred.index, "true_log_hazard"].to_numpy())


def test_rfs_fusion_ranks_unseen_patients_well_above_chance(rfs_runs):
    """Fusion floor 0.60 on unseen patients (oracle C ~0.70). Measured test C over seeds 0-3 with
    ``/tmp``-style runs of this exact configuration: see docs/rfs.md "Quality floors"."""
    c, oracle = _shipped_c(rfs_runs, "fusion")
    folds = json.loads((rfs_runs["root"] / "fusion" / "manifest.json").read_text())["folds"]
    assert all(f["downstream_fit"] == "blend" and f["n_downstream"] < f["n_train"] for f in folds)
    assert oracle > 0.65
    assert c > 0.60, c  # a negated risk scores 1 - c < 0.40


def test_rfs_clinical_only_is_above_chance(rfs_runs):
    """Clinical-only floor 0.51 (HPV, age, performance status, M1, surgery carry part of the true hazard).
    Seeds 0-3 with the blended downstream model: 0.614 / 0.521 / 0.550 / 0.634 (docs/rfs.md "Quality floors");
    a negated risk on this seed scores 0.479."""
    c, _ = _shipped_c(rfs_runs, "clinical")
    assert c > 0.51, c


def test_rfs_evaluate_reports_missing_outcome_and_training_overlap(rfs_runs, tmp_path):
    """Evaluating the training cohort with one outcome blanked: no float(None) crash, the patient is reported,
    the overlap with the training patients is warned about and recorded in metrics.json."""
    from hnc_core import schema
    from survival_head.rfs.evaluation import TrainingOverlapWarning, evaluate

    cohort = tmp_path / "cohort"
    shutil.copytree(rfs_runs["root"] / "train", cohort)
    csv = cohort / schema.CLINICAL_CSV_NAME
    clin = pd.read_csv(csv, dtype={schema.PATIENT_ID: str})
    pid = clin[schema.PATIENT_ID].iloc[0]
    clin.loc[0, [schema.RFS, schema.RELAPSE]] = np.nan
    clin.to_csv(csv, index=False)
    with pytest.warns(TrainingOverlapWarning, match="training patients"):
        m = evaluate(cohort, rfs_runs["root"] / "fusion", tmp_path / "eval", n_boot=50,
                     cache_dir=rfs_runs["root"] / "cache", progress=False)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert any(f["PatientID"] == pid and "no outcome" in f["error"] for f in saved["failures"])
    assert saved["training_overlap"]["n"] == saved["n"] == 79 and pid not in saved["training_overlap"]["ids"]
    assert m["n"] == 79


DM_SEED = 1


def test_dm_fusion_ranks_unseen_patients_well_above_chance(tmp_path_factory):
    """DM floors on 60 unseen patients (12 with DM), models trained on 100 (image 32^3, 2 image epochs, fast
    radiomics): the shipped predictions.csv of the full fusion AUC > 0.55 and radiomics+clinical AUC > 0.62
    (1 - p scores below 0.45 / 0.38). Measured for this configuration on four seeds
    (``python benchmarks/exp_dm_signal_families.py S peritumoral_texture 100 60``), fusion / radiomics+clinical:
    seed 0 0.746 / 0.794, seed 1 0.599 / 0.714, seed 2 0.702 / 0.788, seed 3 0.651 / 0.676 (oracle 0.785-0.839).
    The floors sit below the lowest of the four (0.599 / 0.676) and well above chance; the test runs seed 1,
    the weakest seed for fusion, so a healthy model has 0.05 of margin there and a 1 - p model fails by 0.15."""
    import torch
    from sklearn.metrics import roc_auc_score

    from hnc_core import schema
    from hnc_core.synth import generate_cohort
    from survival_head.dm.data import load_dm_data
    from survival_head.dm.training import MODALITIES, fit_fold
    from survival_head.dm.workflows import make_config, predict
    from survival_head.radiomics.extract import load_params

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dm_quality")
    generate_cohort(root / "train", n=100, seed=400 + DM_SEED, progress=False)
    generate_cohort(root / "test", n=60, seed=500 + DM_SEED, progress=False)
    params = load_params("fast")
    cfg = make_config(image_size=32, window_size=4, feature_size=6, max_epochs=2, seed=DM_SEED)
    tr = load_dm_data(root / "train", root / "cache", image_size=32, radiomics_params=params, progress=False,
                      workers=2)
    fitted = fit_fold(tr, np.arange(len(tr.ids)), cfg, [MODALITIES, ("radiomics", "clinical")])[0]
    fusion = fitted["+".join(MODALITIES)]
    fusion.info["radiomics_params"] = params
    fusion.save(root / "model")
    df = predict(root / "test", root / "out", root / "model", radiomics_cache=root / "cache", progress=False,
                 workers=2, labelled_only=True)
    y = df.attrs["data"].y
    shipped = pd.read_csv(root / "out" / "predictions.csv").set_index(schema.PATIENT_ID)
    assert list(shipped.index) == list(df[schema.PATIENT_ID])
    assert roc_auc_score(y, shipped["dm_probability"]) > 0.55
    assert roc_auc_score(y, fitted["radiomics+clinical"].predict_proba(df.attrs["data"])) > 0.62
