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
    sel = RadiomicsSelector(corr_threshold=0.9, k=5).fit(X, y)
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
