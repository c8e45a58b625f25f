"""RadiomicsSelector: correlation filter, random-forest top-k, persistence, sklearn conventions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from survival_head.radiomics import RadiomicsSelector


def _table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    signal = y * 1.5 + rng.normal(0, 1, n)
    cols = {"signal": signal, "signal_copy": signal * 3 + 1e-3 * rng.normal(0, 1, n)}
    for i in range(40):
        cols[f"noise{i}"] = rng.normal(0, 1, n)
    cols["constant"] = np.ones(n)
    return pd.DataFrame(cols), y


def test_filter_drops_correlated_copy_and_keeps_signal():
    X, y = _table()
    sel = RadiomicsSelector(corr_threshold=0.9, k=5, k_by_cv=False).fit(X, y)
    assert len(sel.selected_) == 5
    assert ("signal" in sel.kept_after_corr_) != ("signal_copy" in sel.kept_after_corr_)
    assert "constant" not in sel.kept_after_corr_
    assert sel.selected_[0] in ("signal", "signal_copy")
    Z = sel.transform(X)
    assert Z.shape == (len(X), 5) and Z.dtype == np.float32
    assert np.allclose(Z.mean(0), 0, atol=1e-5)


def test_json_round_trip_and_missing_values(tmp_path):
    X, y = _table()
    sel = RadiomicsSelector(k=8).fit(X, y)
    sel.save(tmp_path / "sel.json")
    back = RadiomicsSelector.load(tmp_path / "sel.json")
    Xn = X.copy()
    Xn.iloc[0, :] = np.nan
    assert np.allclose(back.transform(Xn), sel.transform(Xn))
    assert np.isfinite(sel.transform(Xn)).all()


def test_sklearn_conventions():
    sel = RadiomicsSelector(corr_threshold=0.8, k=3)
    assert clone(sel).get_params() == sel.get_params()
    assert not any(a.endswith("_") for a in vars(sel))


def test_shape_family_is_not_filtered_out_by_a_correlated_texture_feature():
    """A texture feature that tracks lesion volume (and is slightly more relevant) used to knock the shape
    feature out of the global correlation filter; the filter now runs inside each family."""
    rng = np.random.default_rng(1)
    n = 150
    y = (rng.random(n) < 0.3).astype(int)
    volume = y * 1.2 + rng.normal(0, 1, n)
    cols = {"tumour__original_shape_VoxelVolume": volume,
            "tumour__original_glrlm_RunLengthNonUniformity": volume + 0.25 * y + 0.1 * rng.normal(0, 1, n)}
    for i in range(60):
        cols[f"ring__original_glcm_Noise{i}"] = rng.normal(0, 1, n)
    X = pd.DataFrame(cols)
    old = RadiomicsSelector(k=4, method="rf", per_family=False, k_by_cv=False).fit(X, y)
    assert "tumour__original_shape_VoxelVolume" not in old.kept_after_corr_  # the defect
    new = RadiomicsSelector(k=16).fit(X, y)
    assert "tumour__original_shape_VoxelVolume" in new.kept_after_corr_
    assert {"tumour__original_shape_VoxelVolume", "tumour__original_glrlm_RunLengthNonUniformity"} & set(new.selected_)
    assert 1 <= new.k_ <= 16 and set(new.k_scores_) <= {4, 8, 16}


def test_stability_selection_recovers_weak_signal_among_many_candidates():
    """3 informative columns among 600 noise columns, 150 patients: stability selection ranks them first."""
    rng = np.random.default_rng(2)
    n = 150
    y = (rng.random(n) < 0.3).astype(int)
    cols = {f"tumour__original_firstorder_Signal{i}": 0.9 * y + rng.normal(0, 1, n) for i in range(3)}
    for i in range(600):
        cols[f"ring__original_glcm_Noise{i}"] = rng.normal(0, 1, n)
    sel = RadiomicsSelector(k=8, k_by_cv=False).fit(pd.DataFrame(cols), y)
    assert sum(c.startswith("tumour__original_firstorder_Signal") for c in sel.selected_[:4]) == 3
