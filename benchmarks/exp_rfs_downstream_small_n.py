"""Which downstream survival model to fit when a fold's inner (out-of-sample) part is tiny (issue 15).

Every fold trains its network once (exactly as ``train_folds``: inner early-stopping split, frozen backbone),
then several downstream models are fitted on that same network's 128-d fused features and scored side by
side, so the comparison is paired:

* ``ridge_inner``   ridge-Cox on the inner part's features (out of sample; the shipped rule before this study)
* ``ridge_all``     ridge-Cox on all the fold's training rows (in sample)
* ``head``          the network's own Cox head (linear on the same features)
* ``blend``         mean of the z-scored ``head`` and ``ridge_inner`` risks

Scores: out-of-fold Harrell C on the training cohort and the C of the fold-average on an unseen test cohort.

Usage: python benchmarks/exp_rfs_downstream_small_n.py N N_FOLDS IMAGE_SIZE LR SEEDS MODES
       (e.g. 40 5 32 1e-3 0,1,2,3,4 fusion,image,clinical   = the ``make demo`` setting)
Cohorts: train generate_cohort(n=N, seed=300+SEED), test (n=60, seed=400+SEED) under $EXP_DIR (/tmp/hnc_exp).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from hnc_core.synth import generate_cohort  # noqa: E402
from survival_head.evaluation.survival_metrics import harrell_c  # noqa: E402
from survival_head.rfs import workflows as W  # noqa: E402
from survival_head.rfs.data import load_patient_images  # noqa: E402
from survival_head.rfs.folds import inner_split, stratified_folds  # noqa: E402
from survival_head.rfs.survival_model import PenalizedCoxRisk  # noqa: E402
from survival_head.rfs.training import TrainConfig, train_network  # noqa: E402

RULES = ("ridge_inner", "ridge_all", "head", "blend")


def _z(train_risk, risk):
    sd = train_risk.std()
    return (risk - train_risk.mean()) / (sd if sd > 1e-12 else 1.0)


def run(n, n_folds, size, lr, seed, mode, base):
    import torch

    torch.set_num_threads(1)
    tr_dir, te_dir = f"{base}/n{n}_s{seed}/train", f"{base}/n{n}_s{seed}/test"
    if not os.path.exists(tr_dir + "/ground_truth.csv"):
        generate_cohort(tr_dir, n=n, seed=300 + seed, progress=False)
    if not os.path.exists(te_dir + "/ground_truth.csv"):
        generate_cohort(te_dir, n=60, seed=400 + seed, progress=False)
    cache = f"{base}/n{n}_s{seed}/cache"
    data = load_patient_images(tr_dir, size, "rfs", cache, False)
    test = load_patient_images(te_dir, size, "rfs", cache, False)
    cfg = TrainConfig(max_epochs=20, batch_size=8, lr=lr, seed=seed, freeze_backbone=True, progress=False)
    y = data.outcome()
    folds = stratified_folds(data.ids, y["event"], n_folds, seed)
    feats = W._frozen_features(data, mode, seed, "paper+hpv")
    tfeats = W._frozen_features(test, mode, seed, "paper+hpv")
    oof = {r: {} for r in RULES}
    test_z = {r: [] for r in RULES}
    n_events = []
    for k, fold in enumerate(folds):
        enc = W.make_encoder("paper+hpv").fit(data.cohort.clinical.reindex(fold["train"]))
        t_tr, t_va = (W._fold_tensors(data, fold[p], enc, feats) for p in ("train", "val"))
        t_te = W._fold_tensors(test, test.ids, enc, tfeats)
        fit_ids, stop_ids = inner_split(fold["train"], data.outcome(fold["train"])["event"], 0.2, seed + k)
        fit, stop = W._fold_tensors(data, fit_ids, enc, feats), W._fold_tensors(data, stop_ids, enc, feats)
        n_events.append(int(stop["event"].sum()))
        net = W.build_network(mode=mode, seed=seed, clinical_set="paper+hpv")
        net.set_image_standardisation(t_tr["image_features"])
        net, _ = train_network(net, fit, stop, cfg)
        f = {p: W._fused(net, t, cfg) for p, t in (("train", t_tr), ("val", t_va), ("test", t_te), ("stop", stop))}
        w = net.risk_head.weight.detach().numpy().ravel().astype(float)
        m_in = PenalizedCoxRisk(random_state=seed).fit(f["stop"], data.outcome(stop_ids))
        m_all = PenalizedCoxRisk(random_state=seed).fit(f["train"], data.outcome(fold["train"]))
        raw = {"ridge_inner": {p: m_in.predict(f[p]) for p in ("train", "val", "test")},
               "ridge_all": {p: m_all.predict(f[p]) for p in ("train", "val", "test")},
               "head": {p: f[p] @ w for p in ("train", "val", "test")}}
        zz = {r: {p: _z(raw[r]["train"], raw[r][p]) for p in ("val", "test")} for r in raw}
        zz["blend"] = {p: zz["head"][p] + zz["ridge_inner"][p] for p in ("val", "test")}
        for r in RULES:
            oof[r].update(zip(fold["val"], zz[r]["val"]))
            test_z[r].append(zz[r]["test"])
    yt = test.outcome()
    out = {}
    for r in RULES:
        c_oof = harrell_c(y, np.array([oof[r][i] for i in data.ids]))
        c_test = harrell_c(yt, np.mean(test_z[r], 0))
        out[r] = (c_oof, c_test)
    return out, n_events


def main():
    n, n_folds, size, lr = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    seeds = [int(s) for s in sys.argv[5].split(",")]
    modes = sys.argv[6].split(",")
    base = os.environ.get("EXP_DIR", "/tmp/hnc_exp") + "/downstream"
    print(f"n={n} folds={n_folds} crop={size} lr={lr}; columns: OOF C / test C (60 unseen)")
    print("seed mode      inner events  " + "  ".join(f"{r:>13}" for r in RULES), flush=True)
    for seed in seeds:
        for mode in modes:
            t = time.time()
            res, ev = run(n, n_folds, size, lr, seed, mode, base)
            cells = "  ".join(f"{res[r][0]:.3f}/{res[r][1]:.3f}" for r in RULES)
            print(f"{seed:>4} {mode:<9} {','.join(map(str, ev)):<13} {cells}   ({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
