"""Modality ablations and subgroup-stratified metrics from one cross-validation run.

``python -m survival_head.dm.analysis COHORT OUT [--image-size 32] [--max-epochs 2] [--subgroups "HPV Status" CenterID]``

(The earlier underscore spellings, ``--image_size`` ..., are still accepted.)

All modality subsets share each fold's selector, clinical encoder and stage-1 image branch, so the
comparison isolates the fusion inputs. On a synthetic cohort the oracle AUC (true DM probability of
``ground_truth.csv``) is reported beside the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from hnc_core import schema
from hnc_core.cli_args import add_underscore_aliases
from hnc_core.io import write_csv_atomic, write_json_atomic
from survival_head.dm.data import DMData, load_for_config
from survival_head.dm.metrics import auc_difference_ci, binary_metrics, fold_threshold_metrics, plot_roc
from survival_head.dm.training import MODALITIES, DMConfig, cross_validate, make_config

ALL_SETS = [c for r in (1, 2, 3) for c in itertools.combinations(MODALITIES, r)]
DEFAULT_SUBGROUPS = (schema.HPV, schema.CENTER)


def _subgroups(data, p, cols, pred_class=None) -> dict:
    out = {}
    for col in cols:
        vals = data.clinical[col] if col in data.clinical.columns else pd.Series(np.nan, index=data.clinical.index)
        keys = vals.map(lambda v: "missing" if pd.isna(v) else str(int(v)) if isinstance(v, float) and v == int(v)
                        else str(v)).to_numpy()
        out[col] = {}
        for level in sorted(set(keys)):
            m = keys == level
            out[col][level] = binary_metrics(data.y[m], p[m], n_boot=200,
                                             pred_class=None if pred_class is None else pred_class[m])
    return out


BASELINE = "baseline:logistic_all_radiomics"


def logistic_all_radiomics(train_rad: pd.DataFrame, y_train: np.ndarray, test_rad: pd.DataFrame,
                           seed: int = 0) -> np.ndarray:
    """Baseline: L2-penalised logistic regression on ALL radiomics columns (no selection), penalty chosen by
    an inner 3-fold CV of the AUC; median imputation and standardisation fitted on the training rows.
    Returns P(DM) for ``test_rad`` (n_test,)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    A = train_rad.to_numpy(float)
    keep = np.isfinite(A).mean(0) > 0.5
    A = np.where(np.isfinite(A), A, np.nan)[:, keep]
    keep_cols = train_rad.columns[keep]
    std = np.nanstd(A, axis=0) > 1e-12
    cols = keep_cols[std]
    n_splits = int(min(3, np.bincount(np.asarray(y_train, int), minlength=2).min()))
    if n_splits >= 2:
        clf = LogisticRegressionCV(Cs=np.logspace(-4, 0, 9), cv=n_splits, scoring="roc_auc",
                                   class_weight="balanced", max_iter=2000, random_state=seed)
    else:  # too few of one class for an inner CV (tiny cohorts): a fixed, strong penalty
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=0.01, class_weight="balanced", max_iter=2000)
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), clf)
    clean = lambda df: df[cols].astype(float).where(np.isfinite(df[cols].astype(float)))  # noqa: E731
    model.fit(clean(train_rad), np.asarray(y_train, int))
    return model.predict_proba(clean(test_rad))[:, 1]


def _baseline_oof(data, folds, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P(DM) of :func:`logistic_all_radiomics` on the same folds, and classes at each training
    fold's Youden threshold (on out-of-sample inner-CV predictions of the training rows)."""
    from sklearn.model_selection import StratifiedKFold

    from survival_head.dm.metrics import youden_threshold

    pos = {pid: i for i, pid in enumerate(data.ids)}
    p, cls = np.full(len(data.ids), np.nan), np.zeros(len(data.ids), int)
    for f in folds:
        tr, te = [pos[i] for i in f["train_ids"]], [pos[i] for i in f["test_ids"]]
        rad_tr, y_tr = data.radiomics.iloc[tr], data.y[tr]
        p[te] = logistic_all_radiomics(rad_tr, y_tr, data.radiomics.iloc[te], seed)
        n_inner = int(min(3, np.bincount(y_tr, minlength=2).min()))
        if n_inner >= 2:  # out-of-sample predictions of the training rows for the threshold
            inner = np.full(len(tr), np.nan)
            for a, b in StratifiedKFold(n_inner, shuffle=True, random_state=seed).split(np.zeros(len(tr)), y_tr):
                inner[b] = logistic_all_radiomics(rad_tr.iloc[a], y_tr[a], rad_tr.iloc[b], seed)
        else:  # too few of one class: in-sample threshold
            inner = logistic_all_radiomics(rad_tr, y_tr, rad_tr, seed)
        cls[te] = (p[te] >= youden_threshold(y_tr, inner)).astype(int)
    return p, cls


def fusion_differences(y: np.ndarray, oof: dict, full: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Paired-bootstrap AUC(``full``) - AUC(other) on the out-of-fold predictions, for every other row
    ``oof`` holds (modality subsets and the baseline): ``{name: {"estimate", "ci_low", "ci_high", "n_boot"}}``."""
    return {name: auc_difference_ci(y, oof[full], p, n_boot, seed=seed) for name, p in oof.items() if name != full}


def _oracle(cohort_dir, ids) -> float | None:
    f = Path(cohort_dir) / schema.GROUND_TRUTH_CSV_NAME
    if not f.is_file():
        return None
    from hnc_core.synth import load_ground_truth

    gt = load_ground_truth(cohort_dir)
    if "true_dm_probability" not in gt.columns or not set(ids) <= set(gt.index):
        return None
    p = gt.loc[ids, "true_dm_probability"].to_numpy()
    y = (gt.loc[ids, "u_dm"].to_numpy() < p).astype(int)  # the written DM label, as the generator drew it
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def run_analysis(
    cohort_dir: str | Path,
    out_dir: str | Path,
    *,
    radiomics_cache: str | Path | None = None,
    radiomics_params=None,
    mask_dir: str | Path | None = None,
    subgroups=DEFAULT_SUBGROUPS,
    modality_sets=ALL_SETS,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    device: str = "cpu",
    baseline: bool = True,
    **config,
) -> dict:
    """Cross-validate every modality subset (plus, with ``baseline``, a penalised logistic model on all
    radiomics on the same folds); write ``analysis.json``, ``ablation.csv``, ``oof_predictions.csv``,
    ``roc_ablation.png``. Returns the analysis dict (``ablation``, ``subgroups``, ``oracle_auc``, ``config``)."""
    from survival_head.radiomics.extract import load_params

    cfg = make_config(**config)
    params = radiomics_params if isinstance(radiomics_params, dict) else load_params(radiomics_params)
    data = load_for_config(cohort_dir, radiomics_cache, cfg, mask_dir, params, workers, scheduler, True, progress)
    cv = cross_validate(data, cfg, [tuple(m) for m in modality_sets], progress, device)
    return write_analysis(cohort_dir, data, cv, cfg, out_dir, subgroups, baseline)


def run_analysis_seeds(cohort_dir: str | Path, out_dir: str | Path, seeds, *, radiomics_cache=None,
                       radiomics_params=None, mask_dir=None, subgroups=DEFAULT_SUBGROUPS, modality_sets=ALL_SETS,
                       workers: int = 1, scheduler: str | None = None, progress: bool = True, device: str = "cpu",
                       baseline: bool = True, **config) -> dict:
    """:func:`run_analysis` for several CV seeds on one loaded cohort (radiomics and crops read once): each
    seed's files go to ``out_dir/seed{S}/``; returns ``{S: analysis dict}`` and writes ``out_dir/seeds.json``
    (per seed: AUC and 95 % CI of every row, paired fusion differences, oracle)."""
    from survival_head.radiomics.extract import load_params

    cfg = make_config(**config)
    params = radiomics_params if isinstance(radiomics_params, dict) else load_params(radiomics_params)
    data = load_for_config(cohort_dir, radiomics_cache, cfg, mask_dir, params, workers, scheduler, True, progress)
    out, summary = {}, {}
    for seed in seeds:
        c = dataclasses.replace(cfg, seed=int(seed))
        cv = cross_validate(data, c, [tuple(m) for m in modality_sets], progress, device)
        res = write_analysis(cohort_dir, data, cv, c, Path(out_dir) / f"seed{int(seed)}", subgroups, baseline)
        out[int(seed)] = res
        summary[int(seed)] = {"auc": {k: [v["auc"], *v["auc_ci95"]] for k, v in res["ablation"].items()},
                              "fusion_minus": res["fusion_minus"], "fusion_model": res["fusion_model"],
                              "oracle_auc": res["oracle_auc"], "n_patients": res["n_patients"],
                              "n_positive": res["n_positive"]}
        write_json_atomic(Path(out_dir) / "seeds.json", {"config": dataclasses.asdict(cfg), "seeds": summary})
    return out


def write_analysis(cohort_dir: str | Path, data: DMData, cv: dict, cfg: DMConfig, out_dir: str | Path,
                   subgroups=DEFAULT_SUBGROUPS, baseline: bool = True) -> dict:
    """Ablation table, subgroup metrics and ROC from one :func:`cross_validate` result ``cv`` (any modality
    sets; rows in the order of :data:`ALL_SETS`); writes the files of :func:`run_analysis` and returns its dict."""
    order = ["+".join(m) for m in ALL_SETS]
    names = sorted(cv["oof"], key=lambda n: order.index(n) if n in order else len(order))
    out = Path(out_dir)
    ablation, curves = {}, {}
    for name in names:
        p = cv["oof"][name]
        ablation[name] = binary_metrics(data.y, p, pred_class=cv["pred_class"][name])
        ablation[name].update(fold_threshold_metrics(data.y, cv["pred_class"][name]))
        curves[name] = (data.y, p)
    if baseline:
        p_b, cls_b = _baseline_oof(data, cv["folds"], cfg.seed)
        ablation[BASELINE] = binary_metrics(data.y, p_b, pred_class=cls_b)
        ablation[BASELINE].update(fold_threshold_metrics(data.y, cls_b))
        curves[BASELINE] = (data.y, p_b)
        cv["oof"][BASELINE] = p_b
    # the fused model: the subset with the most modalities (all three when fitted; first such subset on ties)
    full = max(names, key=lambda n: len(n.split("+")))
    oracle = _oracle(cohort_dir, data.ids)
    fusion_minus = fusion_differences(data.y, cv["oof"], full, seed=cfg.seed)
    result = {
        "config": dataclasses.asdict(cfg), "n_patients": len(data.ids), "n_positive": int(data.y.sum()),
        "radiomics_features_per_patient": int(data.radiomics.shape[1]),
        "ablation": ablation, "subgroups": _subgroups(data, cv["oof"][full], subgroups, cv["pred_class"][full]), "subgroup_model": full,
        "oracle_auc": oracle, "fused_over_oracle": (ablation[full]["auc"] / oracle) if oracle else None,
        "fusion_minus": fusion_minus, "fusion_model": full,
        "selected_features_per_fold": [f["selector"].selected_ for f in cv["folds"]], "errors": data.errors,
    }
    write_json_atomic(out / "analysis.json", result)
    rows = [{"modalities": k, **{m: v[m] for m in ("auc", "accuracy", "sensitivity", "specificity")},
             "auc_lo": v["auc_ci95"][0], "auc_hi": v["auc_ci95"][1]} for k, v in ablation.items()]
    write_csv_atomic(pd.DataFrame(rows), out / "ablation.csv")
    write_csv_atomic(pd.DataFrame({schema.PATIENT_ID: data.ids, schema.DM: data.y,
                                   **{k: cv["oof"][k] for k in names}}), out / "oof_predictions.csv")
    plot_roc(curves, out / "roc_ablation.png", f"DM CV ablation (image {cfg.image_size}^3, {cfg.max_epochs} ep)")
    return result


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser: hyphenated flags, the earlier underscore spellings accepted as hidden aliases."""
    ap = argparse.ArgumentParser(prog="python -m survival_head.dm.analysis", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cohort_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--radiomics-cache", default=None)
    ap.add_argument("--radiomics-params", default=None, help="params YAML / 'fast' (default: full 1,502/region)")
    ap.add_argument("--mask-dir", default=None)
    ap.add_argument("--subgroups", nargs="*", default=list(DEFAULT_SUBGROUPS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheduler", default=None)
    ap.add_argument("--device", default="cpu", help="torch device of the image branch (cpu, cuda)")
    ap.add_argument("--sets", nargs="+", default=None, metavar="SET",
                    help="modality subsets to fit, e.g. radiomics clinical radiomics+clinical (default: all 7)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="several CV seeds on one loaded cohort (OUT/seed{S}/ each, OUT/seeds.json); overrides --seed")
    for k, typ in (("image_size", int), ("max_epochs", int), ("backbone", str), ("window_size", int),
                   ("fov_mm", float), ("feature_size", int), ("deep_dim", int), ("lr", float), ("n_folds", int), ("seed", int), ("head_epochs", int), ("head_inner_val", float), ("k", int)):
        ap.add_argument(f"--{k.replace('_', '-')}", dest=k, type=typ, default=None)
    return add_underscore_aliases(ap)


def main(argv=None) -> int:
    a = vars(build_parser().parse_args(argv))
    seeds, sets = a.pop("seeds"), a.pop("sets")
    if sets:
        bad = [m for s in sets for m in s.split("+") if m not in MODALITIES]
        if bad:
            raise SystemExit(f"--sets: unknown modality {bad[0]!r} (choose from {'/'.join(MODALITIES)}, joined by +)")
        a["modality_sets"] = [tuple(s.split("+")) for s in sets]
    if seeds:
        a.pop("seed")
        results = run_analysis_seeds(a.pop("cohort_dir"), a.pop("out_dir"), seeds, **a)
    else:
        res = run_analysis(a.pop("cohort_dir"), a.pop("out_dir"), **a)
        results = {res["config"]["seed"]: res}
    for seed, res in results.items():
        print(f"seed {seed}: {res['n_patients']} patients, {res['n_positive']} with DM")
        print(json.dumps({k: {m: round(v[m], 3) for m in ("auc", "accuracy", "sensitivity", "specificity")}
                          for k, v in res["ablation"].items()}, indent=1))
        print(f"oracle AUC {res['oracle_auc']}, fused/oracle {res['fused_over_oracle']}")
        for name, d in res["fusion_minus"].items():
            print(f"{res['fusion_model']} - {name} (paired bootstrap, {d['n_boot']}): "
                  f"{d['estimate']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
