"""Unit tests of the RFS model: Cox loss, snapshots, ensemble scaling, estimator sign, transforms."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sksurv.linear_model.coxph import CoxPHOptimizer
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from survival_head.rfs.ensemble import RiskEnsemble
from survival_head.rfs.loss import CoxPHLoss, cox_partial_nll
from survival_head.rfs.survival_model import PenalizedCoxRisk
from survival_head.rfs.training import BestCheckpoint


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_loss_matches_sksurv_reference_with_ties(ties):
    rng = np.random.default_rng(3)
    n = 40
    time = rng.integers(1, 9, n).astype(float)  # many ties
    event = rng.random(n) < 0.6
    risk = rng.normal(size=n)
    ref = CoxPHOptimizer(risk[:, None], event, time, np.zeros(1), ties).nlog_likelihood(np.ones(1))
    mine = cox_partial_nll(torch.tensor(risk), torch.tensor(time), torch.tensor(event), ties, "n_samples")
    assert abs(float(mine) - ref) < 1e-6


def test_cox_loss_hand_computed_toy_case():
    # times 1 (event), 1 (event), 2 (censored), 3 (event); risks a, b, c, d
    r = torch.tensor([0.5, -0.2, 0.1, 0.3], dtype=torch.float64)
    t = torch.tensor([1.0, 1.0, 2.0, 3.0])
    e = torch.tensor([1, 1, 0, 1])
    ex = np.exp(r.numpy())
    full = ex.sum()
    breslow = -(r[0] + r[1] - 2 * math.log(full) + r[3] - math.log(ex[3]))
    efron = -(r[0] + r[1] - math.log(full) - math.log(full - 0.5 * (ex[0] + ex[1])) + r[3] - math.log(ex[3]))
    assert abs(float(cox_partial_nll(r, t, e, "breslow", "sum")) - float(breslow)) < 1e-10
    assert abs(float(cox_partial_nll(r, t, e, "efron", "sum")) - float(efron)) < 1e-10


def test_cox_loss_prefers_correct_order_and_handles_no_events():
    t = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    e = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])
    good = torch.tensor([2.0, 1.0, 0.0, -1.0, -2.0])  # early events get high risk
    loss = CoxPHLoss("efron")
    assert loss(good, t, e) < loss(-good, t, e)
    r = torch.zeros(3, requires_grad=True)
    z = loss(r, torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    z.backward()
    assert float(z) == 0.0 and torch.equal(r.grad, torch.zeros(3))


def test_best_checkpoint_is_a_deep_copy():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 1))
    best = BestCheckpoint()
    best.update(0.7, net, epoch=0)
    snap = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    for _ in range(3):  # keep training after the snapshot (BatchNorm running stats change too)
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    assert not torch.equal(net[0].weight, snap["0.weight"])
    assert not best.update(0.6, net, epoch=1)  # worse score: snapshot kept
    best.restore(net)
    for k, v in net.state_dict().items():
        assert torch.equal(v, snap[k]), k


def test_fold_with_1000x_outputs_does_not_dominate():
    rng = np.random.default_rng(0)
    tr = [rng.normal(size=50) for _ in range(3)]
    test = [rng.normal(size=20) for _ in range(3)]
    base, scaled = RiskEnsemble(), RiskEnsemble()
    for k in range(3):
        base.add_fold(tr[k], 0.7)
        scaled.add_fold(tr[k] * (1000.0 if k == 1 else 1.0), 0.7)
    a = base.combine(test)
    b = scaled.combine([test[0], test[1] * 1000.0, test[2]])
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    naive = np.mean([test[0], test[1] * 1000.0, test[2]], axis=0)
    assert np.corrcoef(naive, test[1])[0, 1] > 0.99 and np.corrcoef(b, test[1])[0, 1] < 0.9
    # better validation C -> larger weight; chance-level folds keep only the floor
    w = RiskEnsemble(folds=[], weighting="cindex")
    for c in (0.8, 0.6, 0.45):
        w.add_fold(tr[0], c)
    assert w.weights[0] > w.weights[1] > w.weights[2] > 0


def test_penalized_cox_sign_is_risk_and_sklearn_style():
    rng = np.random.default_rng(1)
    n = 150
    X = rng.normal(size=(n, 5))
    eta = 1.2 * X[:, 0] - 0.8 * X[:, 1]
    t_ev = rng.exponential(1000 / np.exp(eta))
    t_c = rng.uniform(200, 2000, n)
    y = Surv.from_arrays(t_ev <= t_c, np.minimum(t_ev, t_c))
    est = PenalizedCoxRisk(alphas=(0.1, 10.0))
    assert clone(est).get_params() == est.get_params()
    assert est.fit(X, y) is est and hasattr(est, "coef_")
    c = concordance_index_censored(y["event"], y["time"], est.predict(X))[0]
    assert c > 0.7  # higher prediction = earlier event
    again = PenalizedCoxRisk.from_dict(est.to_dict())
    np.testing.assert_allclose(again.predict(X), est.predict(X))


def test_blend_with_head_is_the_sum_of_both_z_scored_risks():
    """The blended fold model equals z(ridge) + z(head) up to a constant, stays one linear model (the export
    reads mean/scale/coef only), and survives to_dict/from_dict."""
    from survival_head.rfs.survival_model import blend_with_head

    rng = np.random.default_rng(3)
    X = rng.gamma(2.0, size=(120, 6))  # ReLU-like, non-zero means: the constant must not matter
    t_ev = rng.exponential(1000 / np.exp(X[:, 0] - X[:, 1]))
    y = Surv.from_arrays(t_ev <= 900, np.minimum(t_ev, 900))
    ridge = PenalizedCoxRisk(alphas=(1.0,)).fit(X, y)
    w = np.array([0.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    blend = blend_with_head(ridge, w, X)
    X_new = rng.gamma(2.0, size=(30, 6))
    expected = ridge.predict(X_new) / ridge.predict(X).std() + (X_new @ w) / (X @ w).std()
    diff = blend.predict(X_new) - expected
    np.testing.assert_allclose(diff, diff[0], atol=1e-9)
    assert not np.allclose(blend.coef_, ridge.coef_)  # the head really moved it
    np.testing.assert_allclose(PenalizedCoxRisk.from_dict(blend.to_dict()).predict(X_new), blend.predict(X_new))
    assert PenalizedCoxRisk.from_dict(blend.to_dict()).blend_ == blend.blend_ is not None


def test_clinical_layout_has_fixed_width_and_unknown_for_unseen():
    import pandas as pd

    from hnc_core import schema
    from survival_head.features.clinical import ClinicalEncoder
    from survival_head.rfs.clinical import encode_fixed, n_clinical_features

    train = pd.DataFrame({schema.AGE: [50, 60, None], schema.PERFORMANCE: [0, 1, 1]}, index=["A", "B", "C"])
    enc = ClinicalEncoder().fit(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = encode_fixed(enc, pd.DataFrame({schema.AGE: [70], schema.PERFORMANCE: [3]}, index=["D"]))
    assert x.shape == (1, n_clinical_features()) == (1, 23)
    from survival_head.rfs.clinical import canonical_feature_names

    names = canonical_feature_names()
    assert x[0, names.index("Performance Status=Unknown")] == 1 and x[0, names.index("Performance Status=3")] == 0


def test_clinical_set_paper_hpv_adds_hpv_slots_and_paper_keeps_23():
    import pandas as pd

    from hnc_core import schema
    from survival_head.rfs.clinical import canonical_feature_names, encode_fixed, make_encoder, n_clinical_for

    assert n_clinical_for("paper") == 23 and n_clinical_for("paper+hpv") == 26
    with pytest.raises(ValueError, match="clinical_set"):
        n_clinical_for("hpv-only")
    train = pd.DataFrame({schema.AGE: [50, 60, 70], schema.HPV: [0, 1, None]}, index=["A", "B", "C"])
    enc = make_encoder("paper+hpv").fit(train)
    x = encode_fixed(enc, pd.DataFrame({schema.AGE: [55, 65], schema.HPV: [1, None]}, index=["D", "E"]))
    names = canonical_feature_names(enc.numeric, enc.categorical)
    assert x.shape == (2, 26)
    assert x[0, names.index("HPV Status=1")] == 1 and x[1, names.index("HPV Status=Unknown")] == 1
    paper = encode_fixed(make_encoder("paper").fit(train), train)
    assert paper.shape == (3, 23) and not any("HPV" in n for n in canonical_feature_names())


def test_image_standardisation_buffers_centre_frozen_features():
    from survival_head.rfs.network import FusedFeatureExtractor

    net = FusedFeatureExtractor(26).eval()
    feats = torch.randn(10, 512) * 50 + 7
    net.set_image_standardisation(feats)
    z = (feats - net.image_mean) / net.image_scale
    assert torch.allclose(z.mean(0), torch.zeros(512), atol=1e-4) and torch.allclose(z.std(0, unbiased=False),
                                                                                     torch.ones(512), atol=1e-3)
    assert "image_mean" in net.state_dict() and "image_scale" in net.state_dict()


def test_paired_cindex_difference_ci_sign_and_zero_for_identical_risks():
    from survival_head.evaluation.survival_metrics import harrell_c, harrell_c_difference_ci

    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=n)
    t_ev = rng.exponential(1000 / np.exp(1.5 * x))
    t_c = rng.uniform(200, 2000, n)
    y = Surv.from_arrays(t_ev <= t_c, np.minimum(t_ev, t_c))
    good, noise = x, rng.normal(size=n)
    d = harrell_c_difference_ci(y, good, noise, n_boot=200)
    assert d["estimate"] == pytest.approx(harrell_c(y, good) - harrell_c(y, noise))
    assert 0 < d["ci_low"] <= d["estimate"] <= d["ci_high"]
    same = harrell_c_difference_ci(y, good, good, n_boot=50)
    assert same["estimate"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0


def test_paired_cindex_difference_skips_resamples_without_comparable_pairs():
    """6 patients, 1 event at the longest time: many resamples have an event but no comparable pair
    (sksurv raises); they are skipped instead of crashing the ablation's test-part comparison."""
    from survival_head.evaluation.survival_metrics import harrell_c_difference_ci

    y = Surv.from_arrays(np.array([False, False, False, True, False, True]), np.array([1.0, 2, 3, 4, 5, 6]))
    d = harrell_c_difference_ci(y, np.arange(6.0), np.zeros(6), n_boot=200, seed=0)
    assert 0 < d["n_boot"] < 200 and np.isfinite(d["ci_low"]) and d["ci_low"] <= d["ci_high"]


def test_clinical_pretraining_initialises_the_fusion_clinical_branch():
    from survival_head.rfs.training import TrainConfig
    from survival_head.rfs.workflows import _pretrain_clinical_branch, build_network

    g = torch.Generator().manual_seed(1)
    mk = lambda n: {"image": torch.zeros(n, 2, 8, 8, 8), "image_features": torch.randn(n, 512, generator=g),
                    "clinical": torch.rand(n, 26, generator=g), "time": torch.arange(1.0, n + 1),
                    "event": torch.tensor([1.0, 0.0] * (n // 2))}
    net = build_network(seed=0)
    before = net.clinical_mlp[0].weight.detach().clone()
    cfg = TrainConfig(max_epochs=2, batch_size=4, progress=False, freeze_backbone=True)
    _pretrain_clinical_branch(net, mk(8), mk(4), cfg, 0.3, "paper+hpv")
    assert not torch.equal(before, net.clinical_mlp[0].weight)
    assert net.mode == "fusion" and net.clinical_mlp[0].weight.shape == (32, 26)


def test_inner_split_is_disjoint_stratified_and_falls_back():
    from survival_head.rfs.folds import inner_split

    ids = [f"P{i:02d}" for i in range(40)]
    event = np.array([1, 0, 0, 1] * 10)
    fit, stop = inner_split(ids, event, 0.2, seed=0)
    assert len(stop) == 8 and not set(fit) & set(stop) and sorted(fit + stop) == ids
    ev = dict(zip(ids, event))
    assert sum(ev[i] for i in stop) == 4  # half of the early-stopping part are events, as in the fold
    assert inner_split(ids, event, 0.0) == (ids, [])
    assert inner_split(ids[:4], np.array([1, 0, 0, 0]), 0.5) == (ids[:4], [])


def test_modality_dropout_blanks_one_branch_per_sample_in_training_only():
    from survival_head.rfs.network import FusedFeatureExtractor

    torch.manual_seed(0)
    net = FusedFeatureExtractor(n_clinical=5, modality_dropout=0.5)
    net.fusion = torch.nn.Identity()  # expose the concatenated [image 512 | clinical 32] input of the fusion MLP
    img, cli = torch.randn(400, 512) + 3.0, torch.randn(400, 5)
    net.eval()
    out = net.fuse(img, cli)
    assert (out[:, :512].abs().sum(1) > 0).all()  # eval: nothing blanked
    net.train()
    out = net.fuse(img, cli)
    img_off, cli_off = out[:, :512].abs().sum(1) == 0, out[:, 512:].abs().sum(1) == 0
    assert not (img_off & cli_off).any()  # never both branches
    assert 0.15 < img_off.float().mean() < 0.35 and 0.15 < cli_off.float().mean() < 0.35  # ~p/2 each
    with pytest.raises(ValueError, match="modality_dropout"):
        FusedFeatureExtractor(n_clinical=5, modality_dropout=1.0)
    torch.jit.script(FusedFeatureExtractor(n_clinical=5, modality_dropout=0.3))  # still exportable


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ablation_fusion_differences_give_a_95_percent_interval_for_any_seed(seed):
    """Regression: the seed was once passed positionally into ``alpha`` (seed 1 gave low == high)."""
    from survival_head.rfs.ablation import fusion_differences

    rng = np.random.default_rng(seed)
    n = 150
    x = rng.normal(size=n)
    t_ev = rng.exponential(1000 / np.exp(x))
    y = Surv.from_arrays(t_ev <= 1500, np.minimum(t_ev, 1500))
    risks = {"fusion": {"oof": x + rng.normal(size=n)}, "image": {"oof": rng.normal(size=n)}}
    d = fusion_differences(risks, y, None, n_boot=300, seed=seed)["image"]["oof"]
    assert d["ci_low"] < d["estimate"] < d["ci_high"]
    assert 0.05 < d["ci_high"] - d["ci_low"] < 0.4  # a 95 % interval, neither a point nor min..max


# ------------------------------------------------------------------ one RFS config, one flag spelling

def _bundle_config(name: str) -> dict:
    return json.loads((Path(__file__).parents[1] / "bundles" / "hecktor_rfs_fusion" / "configs" / name).read_text())


def test_bundle_json_defaults_equal_rfs_config():
    from survival_head.rfs.config import DEFAULTS

    alias = {"learning_rate": "lr"}
    checked = 0
    for name in ("train.json", "inference.json", "evaluate.json"):
        cfg = _bundle_config(name)
        for key, value in cfg.items():
            field = alias.get(key, key)
            derived = isinstance(value, str) and value[:1] in "$@"  # read from the trained model's metadata
            if hasattr(DEFAULTS, field) and not isinstance(value, (dict, list)) and not derived:
                assert value == getattr(DEFAULTS, field), f"{name}: {key} = {value!r}, RFSConfig.{field} = " \
                                                          f"{getattr(DEFAULTS, field)!r}"
                checked += 1
    assert checked >= 10  # image_size, max_epochs, lr, batch_size, folds, ... across the three configs


def test_rfs_cli_and_main_job_read_the_config():
    from hnc_petct.pipeline.context import RunOptions
    from survival_head.rfs.ablation import build_parser
    from survival_head.rfs.config import CPU_BUDGET, DEFAULTS

    a = build_parser().parse_args(["C", "O"])
    assert (a.image_size, a.max_epochs, a.lr, a.batch_size, a.n_boot) == (
        DEFAULTS.image_size, DEFAULTS.max_epochs, DEFAULTS.lr, DEFAULTS.batch_size, DEFAULTS.n_boot)
    opt = RunOptions()
    assert (opt.rfs_image_size, opt.rfs_max_epochs, opt.rfs_learning_rate, opt.freeze_backbone) == (
        CPU_BUDGET.image_size, CPU_BUDGET.max_epochs, CPU_BUDGET.lr, CPU_BUDGET.freeze_backbone)


def test_underscore_flag_spellings_still_parse():
    from survival_head.dm.analysis import build_parser as dm_parser
    from survival_head.rfs.ablation import build_parser as rfs_parser

    a = vars(dm_parser().parse_args(["C", "O", "--radiomics_cache", "X", "--image_size", "24", "--max-epochs", "3"]))
    assert (a["radiomics_cache"], a["image_size"], a["max_epochs"]) == ("X", 24, 3)
    assert "--radiomics_cache" not in dm_parser().format_help() and "--radiomics-cache" in dm_parser().format_help()
    b = rfs_parser().parse_args(["C", "O", "--image_size", "40", "--n-folds", "3"])
    assert (b.image_size, b.n_folds) == (40, 3)


def test_one_bundle_root_lookup_for_both_bundles():
    """Both bundles resolve ``bundle_root`` through the one lookup (the running config file's own folder)."""
    import survival_head.dm.bundle as dm_bundle
    import survival_head.rfs.bundle as rfs_bundle
    from hnc_core.bundle_paths import config_bundle_root

    assert rfs_bundle.config_bundle_root is config_bundle_root
    assert dm_bundle.bundle_root.__module__ == "survival_head.dm.bundle"
    assert dm_bundle.bundle_root("/x") == config_bundle_root("/x")
