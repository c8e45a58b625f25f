"""Integrity manifest (sha256 of every artefact a prediction reads), null-hash refusal, DM metrics at the
training-fold Youden threshold, RFS early-stopping fallback record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from survival_head.io.checkpoints import (INTEGRITY_NAME, WeightsError, load_weights, save_weights,
                                          verify_integrity, write_integrity)


def _model_dir(tmp_path):
    sha = save_weights({"w": torch.ones(3)}, tmp_path / "net.pt")
    (tmp_path / "coef.json").write_text(json.dumps({"coef": [0.1, -0.2]}))
    write_integrity(tmp_path, ["net.pt", "coef.json"])
    return sha


def test_null_hash_is_refused(tmp_path):
    _model_dir(tmp_path)
    with pytest.raises(WeightsError, match="no valid sha256"):
        load_weights(tmp_path / "net.pt", None)  # used to skip the check and load
    with pytest.raises(WeightsError, match="no valid sha256"):
        load_weights(tmp_path / "net.pt", "")


def test_integrity_covers_non_weight_artefacts(tmp_path):
    _model_dir(tmp_path)
    assert set(verify_integrity(tmp_path, ["net.pt", "coef.json"])) == {"net.pt", "coef.json"}
    (tmp_path / "coef.json").write_text(json.dumps({"coef": [-0.1, 0.2]}))  # flipped survival coefficients
    with pytest.raises(WeightsError, match="checksum mismatch.*coef.json"):
        verify_integrity(tmp_path)


def test_integrity_refuses_null_unlisted_and_missing(tmp_path):
    _model_dir(tmp_path)
    with pytest.raises(WeightsError, match="does not cover"):
        verify_integrity(tmp_path, ["net.pt", "thresholds.json"])
    man = json.loads((tmp_path / INTEGRITY_NAME).read_text())
    man["files"]["coef.json"] = None
    (tmp_path / INTEGRITY_NAME).write_text(json.dumps(man))
    with pytest.raises(WeightsError, match="no valid sha256"):
        verify_integrity(tmp_path)
    (tmp_path / INTEGRITY_NAME).unlink()
    with pytest.raises(WeightsError, match="missing"):
        verify_integrity(tmp_path)


def test_dm_top_level_classes_use_the_fold_threshold():
    """ACC/SEN/SPE come from the classes predicted at each fold's training-fold Youden threshold, not 0.5."""
    from survival_head.dm.metrics import binary_metrics

    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0.05, 0.1, 0.15, 0.3, 0.35, 0.4])  # well ranked, all below 0.5
    fold_classes = (p >= 0.32).astype(int)  # what the fold thresholds predicted
    m = binary_metrics(y, p, pred_class=fold_classes, n_boot=10)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0 and m["threshold"] == "training_fold_youden"
    assert m["at_0.5"]["sensitivity"] == 0.0


def test_rfs_early_stopping_fallback_is_logged_and_recorded(tiny_cohort, tmp_path, caplog):
    """Too few training patients for an inner split: the fold says so in the log and the manifest."""
    import logging

    from survival_head.rfs.workflows import train_folds

    with caplog.at_level(logging.WARNING, logger="survival_head.rfs.workflows"):
        man = train_folds(tiny_cohort, tmp_path / "m", image_size=16, max_epochs=1, batch_size=2, n_folds=2,
                          freeze_backbone=True, progress=False, mode="clinical", inner_val_fraction=0.2)
    assert all(f["early_stopping"] == "outer_validation_fallback" for f in man["folds"])
    assert all(f["downstream_fit"] == "in_sample" for f in man["folds"])  # no inner rows: said, not hidden
    assert "no inner early-stopping split" in caplog.text
    assert set(verify_integrity(tmp_path / "m")) >= {"manifest.json", "fold0/network.pt",
                                                     "fold0/survival_model.json", "fold1/clinical_encoder.json"}


def test_all_radiomics_logistic_baseline_fits_on_training_rows_only():
    """The analysis baseline ranks unseen rows by the signal and ignores test-row statistics."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from survival_head.dm.analysis import logistic_all_radiomics

    rng = np.random.default_rng(0)
    n = 160
    y = (rng.random(n) < 0.3).astype(int)
    X = pd.DataFrame(rng.normal(0, 1, (n, 300)), columns=[f"ring__original_glcm_F{i}" for i in range(300)])
    for i in range(5):
        X[f"tumour__original_shape_S{i}"] = 1.5 * y + rng.normal(0, 1, n)
    X.iloc[3, 5] = np.nan
    p = logistic_all_radiomics(X.iloc[:100], y[:100], X.iloc[100:])
    assert p.shape == (60,) and np.isfinite(p).all()
    assert roc_auc_score(y[100:], p) > 0.65
    shifted = X.iloc[100:] + 0.0
    shifted.iloc[:, :300] += 5.0  # test rows' own statistics must not be used (no re-standardisation)
    assert not np.allclose(logistic_all_radiomics(X.iloc[:100], y[:100], shifted), p)
