"""Ablations of the paper's Table 3 (clinical-only, imaging-only, fusion) from one command.

    python -m survival_head.rfs.ablation COHORT OUT [--image-size 48 --max-epochs 3 --device cuda ...]

Defaults come from :class:`survival_head.rfs.config.RFSConfig`.

Each mode trains the K-fold ensemble on the training part and is scored (i) on out-of-fold risks of
all training patients and (ii) on a stratified hold-out test part (``holdout_fraction``) with the
ensemble. On synthetic cohorts the oracle C-index of the true log-hazard is reported beside.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from hnc_core.cli_args import add_underscore_aliases
from hnc_core.io import write_json_atomic
from survival_head.rfs.config import DEFAULTS as D
from survival_head.rfs.evaluation import _surv, oracle_cindex, survival_report
from survival_head.rfs.network import MODES

log = logging.getLogger(__name__)


def _split(cohort_dir, image_size, holdout_fraction, seed, cache_dir, progress=True):
    from sklearn.model_selection import train_test_split

    from survival_head.rfs.data import load_patient_images

    data = load_patient_images(cohort_dir, image_size, "rfs", cache_dir, progress)
    if holdout_fraction <= 0:
        return data, data.ids, []
    ev = data.outcome()["event"].astype(int)
    tr, te = train_test_split(data.ids, test_size=holdout_fraction, stratify=ev, random_state=seed)
    return data, sorted(tr), sorted(te)


def run_ablations(cohort_dir: str | Path, out_dir: str | Path, image_size: int = D.image_size,
                  max_epochs: int = D.max_epochs, batch_size: int = D.batch_size, n_folds: int = D.n_folds,
                  modes=MODES, holdout_fraction: float = 0.3, freeze_backbone: bool = D.freeze_backbone,
                  lr: float = D.lr, seed: int = D.seed, n_boot: int = D.n_boot,
                  cache_dir: str | Path | None = None, progress: bool = True, clinical_set: str = D.clinical_set,
                  dropout: float = D.dropout, weight_decay: float = D.weight_decay,
                  pretrain_clinical: bool = D.pretrain_clinical, inner_val_fraction: float = D.inner_val_fraction,
                  modality_dropout: float = D.modality_dropout, device: str = "cpu") -> dict:
    """Train and score each mode; write ``out_dir/ablation.json`` and return it.

    Result: ``{"settings", "oracle_c": {"oof", "test"}, "failures", "modes": {mode: {"oof": report,
    "test": report, "seconds"}}}`` where each report has Harrell's C (+CI), Uno's C and IBS.
    """
    from survival_head.rfs.workflows import ensemble_risk, load_manifest, train_folds

    out_dir = Path(out_dir)
    cache_dir = cache_dir or out_dir / "cache"
    data, tr_ids, te_ids = _split(cohort_dir, image_size, holdout_fraction, seed, cache_dir, progress)
    y_tr = data.outcome(tr_ids)
    res = {"settings": {"cohort": str(cohort_dir), "image_size": image_size, "max_epochs": max_epochs,
                        "batch_size": batch_size, "n_folds": n_folds, "holdout_fraction": holdout_fraction,
                        "freeze_backbone": freeze_backbone, "lr": lr, "seed": seed, "clinical_set": clinical_set,
                        "dropout": dropout, "weight_decay": weight_decay, "pretrain_clinical": pretrain_clinical,
                        "inner_val_fraction": inner_val_fraction, "modality_dropout": modality_dropout,
                        "device": device},
           "oracle_c": {"oof": oracle_cindex(cohort_dir, tr_ids, y_tr)}, "failures": data.failures, "modes": {}}
    if te_ids:
        res["oracle_c"]["test"] = oracle_cindex(cohort_dir, te_ids, data.outcome(te_ids))
    risks: dict[str, dict] = {}
    for mode in modes:
        t0 = time.perf_counter()
        mdir = out_dir / mode
        man = train_folds(cohort_dir, mdir, image_size, max_epochs, batch_size, n_folds, mode, lr, seed,
                          freeze_backbone=freeze_backbone, cache_dir=cache_dir, progress=progress, ids=tr_ids,
                          clinical_set=clinical_set, dropout=dropout, weight_decay=weight_decay,
                          pretrain_clinical=pretrain_clinical, inner_val_fraction=inner_val_fraction,
                          modality_dropout=modality_dropout, device=device, data=data)
        oof = man["oof"]
        y_oof, r_oof = _surv(oof["event"], oof["time"]), np.asarray(oof["risk"], float)
        entry = {"oof": survival_report(y_oof, r_oof, y_oof, r_oof, n_boot, seed),
                 "fold_val_cindex": [f["val_cindex"] for f in man["folds"]],
                 "fold_weights": man["ensemble"]["weights"]}
        if te_ids:
            sub = _subset(data, te_ids)
            risk, _ = ensemble_risk(sub, mdir, load_manifest(mdir), batch_size, device)
            entry["test"] = survival_report(data.outcome(te_ids), risk, y_oof, r_oof, n_boot, seed)
            risks.setdefault(mode, {})["test"] = risk
        risks.setdefault(mode, {})["oof"] = r_oof
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        res["modes"][mode] = entry
        log.info("%s: OOF C = %.3f", mode, entry["oof"]["harrell_c"]["estimate"])
        write_json_atomic(out_dir / "ablation.json", res)
    res["fusion_minus"] = fusion_differences(risks, y_oof, data.outcome(te_ids) if te_ids else None, n_boot, seed)
    write_json_atomic(out_dir / "ablation.json", res)
    return res


def fusion_differences(risks: dict, y_oof, y_test, n_boot: int, seed: int) -> dict:
    """Paired-bootstrap C(fusion) - C(mode) for every other mode, on the OOF and the test part."""
    from survival_head.evaluation.survival_metrics import harrell_c_difference_ci

    if "fusion" not in risks:
        return {}
    out = {}
    for mode in (m for m in risks if m != "fusion"):
        out[mode] = {"oof": harrell_c_difference_ci(y_oof, risks["fusion"]["oof"], risks[mode]["oof"], n_boot,
                                                     seed=seed)}
        if y_test is not None:
            out[mode]["test"] = harrell_c_difference_ci(y_test, risks["fusion"]["test"], risks[mode]["test"],
                                                        n_boot, seed=seed)
    return out


def _subset(data, ids):
    from survival_head.rfs.data import LoadedCohort

    return LoadedCohort(cohort=data.cohort, ids=list(ids), images={i: data.images[i] for i in ids})


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser; defaults from :data:`survival_head.rfs.config.DEFAULTS`."""
    p = argparse.ArgumentParser(prog="python -m survival_head.rfs.ablation", description=__doc__.splitlines()[0])
    p.add_argument("cohort_dir")
    p.add_argument("out_dir")
    p.add_argument("--image-size", type=int, default=D.image_size)
    p.add_argument("--max-epochs", type=int, default=D.max_epochs)
    p.add_argument("--batch-size", type=int, default=D.batch_size)
    p.add_argument("--n-folds", type=int, default=D.n_folds)
    p.add_argument("--holdout-fraction", type=float, default=0.3)
    p.add_argument("--freeze-backbone", action="store_true", default=D.freeze_backbone)
    p.add_argument("--lr", type=float, default=D.lr)
    p.add_argument("--seed", type=int, default=D.seed)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--clinical-set", default=D.clinical_set, choices=["paper", "paper+hpv"])
    p.add_argument("--dropout", type=float, default=D.dropout)
    p.add_argument("--weight-decay", type=float, default=D.weight_decay)
    p.add_argument("--n-boot", type=int, default=D.n_boot)
    p.add_argument("--pretrain-clinical", action="store_true", default=D.pretrain_clinical)
    p.add_argument("--inner-val-fraction", type=float, default=D.inner_val_fraction)
    p.add_argument("--modality-dropout", type=float, default=D.modality_dropout)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--cache-dir", default=None,
                   help="preprocessed-image cache (default OUT/cache); share it between runs on one cohort")
    return add_underscore_aliases(p)


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    res = run_ablations(a.cohort_dir, a.out_dir, a.image_size, a.max_epochs, a.batch_size, a.n_folds,
                        tuple(a.modes), a.holdout_fraction, a.freeze_backbone, a.lr, a.seed, a.n_boot,
                        clinical_set=a.clinical_set, dropout=a.dropout, weight_decay=a.weight_decay,
                        pretrain_clinical=a.pretrain_clinical, inner_val_fraction=a.inner_val_fraction,
                        modality_dropout=a.modality_dropout, device=a.device, cache_dir=a.cache_dir)
    print(format_table(res))
    return 0


def format_table(res: dict) -> str:
    """Markdown table of the ablation result."""
    lines = ["| mode | OOF Harrell C [95% CI] | test Harrell C [95% CI] | test Uno C | test IBS | s |",
             "|---|---|---|---|---|---|"]
    for mode, e in res["modes"].items():
        o, t = e["oof"]["harrell_c"], e.get("test", {}).get("harrell_c", {})
        fmt = (lambda h: f"{h['estimate']:.3f} [{h['ci_low']:.3f}, {h['ci_high']:.3f}]" if h else "-")
        lines.append(f"| {mode} | {fmt(o)} | {fmt(t)} | {e.get('test', {}).get('uno_c', float('nan')):.3f} | "
                     f"{e.get('test', {}).get('ibs', float('nan')):.3f} | {e['seconds']} |")
    oc = res["oracle_c"]
    lines.append(f"| oracle (true log-hazard) | {oc.get('oof') or float('nan'):.3f} | "
                 f"{oc.get('test') or float('nan'):.3f} | | | |")
    for mode, d in res.get("fusion_minus", {}).items():
        fmt = (lambda h: f"{h['estimate']:+.3f} [{h['ci_low']:+.3f}, {h['ci_high']:+.3f}]" if h else "-")
        lines.append(f"| fusion − {mode} (paired bootstrap) | {fmt(d['oof'])} | {fmt(d.get('test'))} | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
