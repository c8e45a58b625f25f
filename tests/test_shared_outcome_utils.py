"""Shared pieces of the outcome models: clinical encoder, bootstrap CI, verified checkpoints."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from hnc_core import schema
from survival_head.evaluation.bootstrap import bootstrap_ci
from survival_head.features.clinical import DM_CATEGORICAL, DM_NUMERIC, UNKNOWN, ClinicalEncoder
from survival_head.io.checkpoints import WeightsError, load_weights, save_weights


def _table():
    return pd.DataFrame({
        schema.PATIENT_ID: ["A-1", "A-2", "A-3", "B-1"],
        schema.AGE: [50.0, np.nan, 70.0, 200.0],
        schema.GENDER: [0, 1, None, 1],
        schema.TOBACCO: [1, 0, 1, 0],
        schema.ALCOHOL: [None, None, 1, 0],
        schema.PERFORMANCE: [0, 1, 0, 3],
        schema.M_STAGE: ["M0", "Mx", None, "M1"],
        schema.TREATMENT: [0, 1, 0, 0],
    }).set_index(schema.PATIENT_ID)


def test_encoder_fits_on_given_rows_only(caplog):
    df = _table()
    train, test = df.iloc[:3], df.iloc[3:]
    enc = ClinicalEncoder().fit(train)
    assert enc.medians_[schema.AGE] == 60.0  # median of 50, 70: the held-out 200 never enters
    assert enc.categories_[schema.M_STAGE] == ["M0", "Mx", UNKNOWN]
    with caplog.at_level(logging.WARNING):
        x = enc.transform(test)
    names = list(enc.get_feature_names_out())
    assert x[0, names.index(f"{schema.M_STAGE}={UNKNOWN}")] == 1.0  # M1 unseen in training
    assert x[0, names.index(f"{schema.PERFORMANCE}={UNKNOWN}")] == 1.0
    assert "B-1" in caplog.text and "M1" in caplog.text
    xt = enc.transform(train)
    assert x.dtype == np.float32 and xt.shape == (3, len(names))
    assert xt[1, 0] == pytest.approx(0.0)  # missing age -> median -> standardised mean 0
    np.testing.assert_allclose(xt.reshape(3, -1)[:, 1:].sum(1), len(enc.categorical))  # one level per column


def test_encoder_json_round_trip(tmp_path):
    enc = ClinicalEncoder(numeric=DM_NUMERIC, categorical=DM_CATEGORICAL).fit(_table())
    enc.save(tmp_path / "enc.json")
    back = ClinicalEncoder.load(tmp_path / "enc.json")
    np.testing.assert_array_equal(back.transform(_table()), enc.transform(_table()))
    assert '"Unknown"' in (tmp_path / "enc.json").read_text()


def test_bootstrap_ci_brackets_estimate_and_skips_undefined():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 200)
    est, lo, hi = bootstrap_ci(np.mean, x, n_boot=300)
    assert lo < est < hi and hi - lo < 0.5
    est, lo, hi = bootstrap_ci(lambda a: np.nan, x, n_boot=50)
    assert np.isnan(lo) and np.isnan(hi)


def test_weights_round_trip_checksum_and_missing(tmp_path):
    state = {"w": torch.arange(4.0)}
    sha = save_weights(state, tmp_path / "m.pt")
    assert torch.equal(load_weights(tmp_path / "m.pt", sha)["w"], state["w"])
    with pytest.raises(WeightsError, match="checksum"):
        load_weights(tmp_path / "m.pt", "0" * 64)
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.pt")
