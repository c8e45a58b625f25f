"""RFS workflows: train the K fold models, predict with the ensemble, evaluate.

Artefacts in ``models_dir`` (written by :func:`train_folds`)::

    manifest.json                    settings, fold list with sha256 of each weights file, ensemble,
                                     out-of-fold risks, excluded patients
    fold{k}/network.pt               FusedFeatureExtractor state dict (loaded with weights_only=True)
    fold{k}/clinical_encoder.json    ClinicalEncoder fitted on fold k's training patients only
    fold{k}/survival_model.json      PenalizedCoxRisk on the 128-d fused features
    integrity.json                   sha256 of every file above (manifest included), checked before loading
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hnc_core.io import write_csv_atomic, write_json_atomic
from survival_head.features.clinical import ClinicalEncoder
from survival_head.io.checkpoints import (WeightsError, load_weights, save_weights,
                                          verify_integrity, write_integrity)
from survival_head.rfs.clinical import DEFAULT_CLINICAL_SET, encode_fixed, make_encoder, n_clinical_for
from survival_head.rfs.config import DEFAULTS as D
from survival_head.rfs.data import LoadedCohort, load_patient_images
from survival_head.rfs.ensemble import RiskEnsemble
from survival_head.rfs.folds import inner_split, stratified_folds
from survival_head.rfs.network import FusedFeatureExtractor, HeadOnly, backbone_features
from survival_head.rfs.survival_model import PenalizedCoxRisk, blend_with_head
from survival_head.rfs.training import TrainConfig, predict_risk, train_network

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
DOWNSTREAM_FITS = ("blend", "out_of_sample", "in_sample")


def build_network(n_clinical: int | None = None, mode: str = "fusion", seed: int = 0, dropout: float = 0.3,
                  clinical_set: str = DEFAULT_CLINICAL_SET, modality_dropout: float = 0.0) -> FusedFeatureExtractor:
    """The RFS network with a seeded initialisation (F from ``clinical_set`` unless ``n_clinical`` is given)."""
    torch.manual_seed(seed)
    return FusedFeatureExtractor(n_clinical or n_clinical_for(clinical_set), mode=mode, dropout=dropout,
                                 modality_dropout=modality_dropout)


def _fold_tensors(data: LoadedCohort, ids: list[str], enc: ClinicalEncoder, feats: dict | None) -> dict:
    y = data.outcome(ids)
    out = {"image": torch.stack([data.images[i] for i in ids]),
           "clinical": torch.from_numpy(encode_fixed(enc, data.cohort.clinical.reindex(ids))),
           "time": torch.tensor(np.array(y["time"], float), dtype=torch.float32),
           "event": torch.tensor(np.array(y["event"], float), dtype=torch.float32)}
    if feats is not None:
        out["image_features"] = torch.stack([feats[i] for i in ids])
    return out


def _pretrain_clinical_branch(net: FusedFeatureExtractor, tr: dict, va: dict, cfg: TrainConfig, dropout: float,
                              clinical_set: str) -> None:
    """Initialise ``net.clinical_mlp`` from a clinical-only network trained on the same fold (Cox loss).

    The fusion MLP then starts from a clinical embedding that already carries the clinical risk, instead
    of having to find it next to 512 image features in ~100 patients.
    """
    cli = build_network(mode="clinical", seed=cfg.seed + 1, dropout=dropout, clinical_set=clinical_set)
    cli, hist = train_network(cli, tr, va, cfg)
    net.clinical_mlp.load_state_dict(cli.clinical_mlp.state_dict())
    log.info("clinical branch pre-trained: val C %.3f (epoch %d)", hist["best_val_cindex"], hist["best_epoch"])


def _fused(net, t: dict, cfg: TrainConfig) -> np.ndarray:
    if cfg.freeze_backbone:
        from survival_head.rfs.network import HeadOnly

        return predict_risk(HeadOnly(net), t["image_features"], t["clinical"], cfg.batch_size, cfg.device, True)
    return predict_risk(net, t["image"], t["clinical"], cfg.batch_size, cfg.device, features=True)


def _train_one_fold(k: int, fold: dict, data: LoadedCohort, cfg: TrainConfig, mode: str, models_dir: Path,
                    feats: dict | None, clinical_set: str, dropout: float,
                    pretrain_clinical: bool = False, inner_val_fraction: float = 0.2,
                    modality_dropout: float = 0.0,
                    downstream_fit: str = "blend") -> tuple[dict, np.ndarray, np.ndarray]:
    """Fit encoder (training rows only), network, downstream model of fold ``k``; save them.

    The network's best epoch is chosen on an inner part (``inner_val_fraction``) of the fold's training
    patients, never on the fold's validation patients (whose C-index must stay unbiased).
    ``downstream_fit="out_of_sample"`` fits the ridge-Cox model (and its penalty) on the 128-d features of
    that inner part, whose patients the network's weights never trained on; ``"blend"`` (default) averages
    that ridge-Cox with the network's own Cox head (both z-scored, :func:`blend_with_head`); ``"in_sample"``
    fits it on all training patients' features (the features of patients the network fitted are optimistic).
    """
    if downstream_fit not in DOWNSTREAM_FITS:
        raise ValueError(f"downstream_fit must be one of {DOWNSTREAM_FITS}, got {downstream_fit!r}")
    from survival_head.evaluation.survival_metrics import harrell_c

    enc = make_encoder(clinical_set).fit(data.cohort.clinical.reindex(fold["train"]))
    tr, va = (_fold_tensors(data, fold[p], enc, feats) for p in ("train", "val"))
    fit_ids, stop_ids = inner_split(fold["train"], data.outcome(fold["train"])["event"], inner_val_fraction, cfg.seed + k)
    if stop_ids:
        fit, stop, stopping = _fold_tensors(data, fit_ids, enc, feats), _fold_tensors(data, stop_ids, enc, feats), \
            "inner_split"
    else:  # recorded in the manifest: this fold's validation C is optimistic (its epoch was chosen on it)
        fit, stop, stopping = tr, va, "outer_validation_fallback"
        log.warning("fold %d: no inner early-stopping split possible (inner_val_fraction=%s, %d training patients, "
                    "%d events): the best epoch is chosen on the fold's validation patients, so its validation "
                    "C-index is optimistic", k, inner_val_fraction, len(fold["train"]),
                    int(np.sum(data.outcome(fold["train"])["event"])))
    net = build_network(mode=mode, seed=cfg.seed, dropout=dropout, clinical_set=clinical_set,
                        modality_dropout=modality_dropout)
    if cfg.freeze_backbone:  # fixed backbone: standardise its outputs with the training patients' statistics
        net.set_image_standardisation(tr["image_features"])
    if pretrain_clinical and net.use_clinical and net.use_image:
        _pretrain_clinical_branch(net, fit, stop, cfg, dropout, clinical_set)
    net, hist = train_network(net, fit, stop, cfg)
    f_tr, f_va = _fused(net, tr, cfg), _fused(net, va, cfg)
    cox_ids = stop_ids if downstream_fit != "in_sample" and stop_ids else fold["train"]
    f_cox = _fused(net, stop, cfg) if cox_ids is stop_ids else f_tr
    model = PenalizedCoxRisk(random_state=cfg.seed).fit(f_cox, data.outcome(cox_ids))
    fitted = "in_sample" if cox_ids is not stop_ids else downstream_fit
    if fitted == "blend":
        model = blend_with_head(model, net.risk_head.weight.detach().cpu().numpy(), f_tr)
    r_tr, r_va = model.predict(f_tr), model.predict(f_va)
    c_val = harrell_c(data.outcome(fold["val"]), r_va)
    d = models_dir / f"fold{k}"
    sha = None
    if _is_writer():  # under torchrun only rank 0 writes: ranks may differ in BatchNorm buffers
        sha = save_weights(net.state_dict(), d / "network.pt")
        enc.save(d / "clinical_encoder.json")
        write_json_atomic(d / "survival_model.json", model.to_dict())
    info = {"fold": k, "weights": f"fold{k}/network.pt", "sha256": sha, "encoder": f"fold{k}/clinical_encoder.json",
            "survival_model": f"fold{k}/survival_model.json", "n_train": len(fold["train"]),
            "val_ids": fold["val"], "val_cindex": c_val, "network_val_cindex": hist["best_val_cindex"],
            "best_epoch": hist["best_epoch"], "history": hist, "alpha": model.alpha_,
            "early_stopping": stopping, "n_early_stopping": len(stop["time"]),
            "downstream_fit": fitted, "n_downstream": len(cox_ids)}
    log.info("fold %d: val C = %.3f (network %.3f, best epoch %d)", k, c_val, hist["best_val_cindex"],
             hist["best_epoch"])
    return info, r_tr, r_va


def train_folds(cohort_dir: str | Path, models_dir: str | Path, image_size: int = D.image_size,
                max_epochs: int = D.max_epochs, batch_size: int = D.batch_size, n_folds: int = D.n_folds,
                mode: str = "fusion", lr: float = D.lr, seed: int = D.seed, device: str = "cpu",
                freeze_backbone: bool = D.freeze_backbone, cache_dir: str | Path | None = None,
                distributed: bool = False, progress: bool = True, ids: list[str] | None = None,
                clinical_set: str = D.clinical_set, dropout: float = D.dropout, weight_decay: float = D.weight_decay,
                pretrain_clinical: bool = D.pretrain_clinical, inner_val_fraction: float = D.inner_val_fraction,
                modality_dropout: float = D.modality_dropout, data: LoadedCohort | None = None,
                downstream_fit: str = "blend") -> dict:
    """Train the K-fold RFS ensemble on ``cohort_dir`` and write it to ``models_dir``; return the manifest.

    ``ids`` restricts training to these patients (e.g. the training part of a hold-out split).
    ``clinical_set``: ``"paper"`` or ``"paper+hpv"`` (see :mod:`survival_head.rfs.clinical`).
    ``pretrain_clinical``: initialise the fusion network's clinical MLP from a clinical-only network of the fold.
    ``inner_val_fraction``: part of each fold's training patients used for early stopping (0 = stop on the
    fold's validation patients, which biases the out-of-fold C-index upwards).
    ``modality_dropout``: per-sample probability of blanking one branch while training a fusion network.
    ``data``: the cohort already loaded at ``image_size`` (:func:`load_patient_images`), so that callers
    training several models on one cohort (the ablation) read and preprocess it once.
    ``downstream_fit``: ``"blend"`` (ridge-Cox on the inner part's features averaged with the network's Cox
    head), ``"out_of_sample"`` (that ridge-Cox alone) or ``"in_sample"`` (ridge-Cox on all training rows).
    """
    n_clinical = n_clinical_for(clinical_set)  # validates the name before any work
    models_dir = Path(models_dir)
    if data is None:
        data = load_patient_images(cohort_dir, image_size, "rfs", cache_dir or models_dir / "cache", progress)
    if ids is not None:
        keep = set(ids)
        data = LoadedCohort(cohort=data.cohort, ids=[i for i in data.ids if i in keep], images=data.images,
                            failures=data.failures)
    cfg = TrainConfig(max_epochs=max_epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                      freeze_backbone=freeze_backbone, distributed=distributed, progress=progress,
                      weight_decay=weight_decay)
    y = data.outcome()
    folds = stratified_folds(data.ids, y["event"], n_folds, seed)
    feats = _frozen_features(data, mode, seed, clinical_set) if freeze_backbone else None
    ens, infos, oof = RiskEnsemble(), [], {}
    for k, fold in enumerate(folds):
        info, r_tr, r_va = _train_one_fold(k, fold, data, cfg, mode, models_dir, feats, clinical_set, dropout,
                                           pretrain_clinical, inner_val_fraction, modality_dropout,
                                           downstream_fit)
        ens.add_fold(r_tr, info["val_cindex"])
        oof.update(zip(fold["val"], ens.normalise(k, r_va).tolist()))
        infos.append(info)
    manifest = {
        "model": "hecktor_rfs_fusion", "mode": mode, "image_size": int(image_size), "n_clinical": n_clinical,
        "clinical_set": clinical_set,
        "train_config": {"max_epochs": max_epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                         "freeze_backbone": freeze_backbone, "n_folds": n_folds, "dropout": dropout,
                         "weight_decay": weight_decay, "pretrain_clinical": pretrain_clinical,
                         "inner_val_fraction": inner_val_fraction, "modality_dropout": modality_dropout,
                         "downstream_fit": downstream_fit},
        "folds": infos, "ensemble": ens.to_dict(), "failures": data.failures,
        "oof": {"PatientID": data.ids, "risk": [oof[i] for i in data.ids], "time": y["time"].tolist(),
                "event": y["event"].astype(int).tolist()},
    }
    if _is_writer():
        write_json_atomic(models_dir / MANIFEST, manifest)
        write_integrity(models_dir, [MANIFEST, *model_files(manifest)])
    return manifest


def model_files(manifest: dict) -> list[str]:
    """Every file (relative to ``models_dir``) a prediction reads besides the manifest itself."""
    return [f[key] for f in manifest["folds"] for key in ("weights", "encoder", "survival_model")]


def _is_writer() -> bool:
    """True outside ``torch.distributed`` and on rank 0: the one process that writes ``models_dir``."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _frozen_features(data: LoadedCohort, mode: str, seed: int, clinical_set: str) -> dict:
    """Backbone outputs (512,) per patient from the seeded initialisation every fold starts from."""
    net = build_network(mode=mode, seed=seed, clinical_set=clinical_set)
    stacked = torch.stack([data.images[i] for i in data.ids]) if data.ids else torch.zeros(0)
    f = backbone_features(net, stacked)
    return dict(zip(data.ids, f))


# ------------------------------------------------------------------------------------------ inference


def load_manifest(models_dir: str | Path) -> dict:
    """The model manifest, after every artefact listed in ``integrity.json`` has been verified."""
    path = Path(models_dir) / MANIFEST
    if not path.is_file():
        raise WeightsError(f"no trained RFS model in {models_dir} ({MANIFEST} missing): run the bundle's "
                           "train.json first; refusing to predict with random weights")
    verify_integrity(models_dir, [MANIFEST])
    manifest = json.loads(path.read_text())
    verify_integrity(models_dir, model_files(manifest))
    return manifest


def load_fold(models_dir: str | Path, info: dict, manifest: dict) -> tuple:
    """(network, encoder, survival model) of one fold; weights checked against their sha256."""
    models_dir = Path(models_dir)
    net = FusedFeatureExtractor(manifest["n_clinical"], mode=manifest["mode"])
    net.load_state_dict(load_weights(models_dir / info["weights"], info["sha256"]))
    enc = ClinicalEncoder.load(models_dir / info["encoder"])
    model = PenalizedCoxRisk.from_dict(json.loads((models_dir / info["survival_model"]).read_text()))
    return net.eval(), enc, model


def ensemble_risk(data: LoadedCohort, models_dir: str | Path, manifest: dict, batch_size: int = 8,
                  device: str = "cpu") -> tuple[np.ndarray, list[np.ndarray]]:
    """Ensemble risk (n,) for ``data.ids`` and the raw per-fold risks."""
    ens = RiskEnsemble.from_dict(manifest["ensemble"])
    if not data.ids:
        return np.zeros(0), []
    images = torch.stack([data.images[i] for i in data.ids])
    fold_risks, shared = [], None  # shared = (backbone state, (n, 512) outputs) of the previous fold
    for info in manifest["folds"]:
        net, enc, model = load_fold(models_dir, info, manifest)
        clin = torch.from_numpy(encode_fixed(enc, data.clinical))
        if net.use_image and shared is not None and _same_state(shared[0], net.backbone.state_dict()):
            # frozen backbone: every fold has the same CNN, run it once and reuse its outputs
            feats = predict_risk(HeadOnly(net), shared[1], clin, batch_size, device, features=True)
        elif net.use_image:
            img_feats = backbone_features(net.to(device), images.to(device), batch_size).cpu()
            shared = (net.backbone.state_dict(), img_feats)
            feats = predict_risk(HeadOnly(net), img_feats, clin, batch_size, device, features=True)
        else:
            feats = predict_risk(net, images, clin, batch_size, device, features=True)
        fold_risks.append(model.predict(feats))
    return ens.combine(fold_risks), fold_risks


def _same_state(a: dict, b: dict) -> bool:
    """True when two state dicts hold identical tensors (same keys, shapes, values)."""
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def predict(cohort_dir: str | Path, models_dir: str | Path, out_dir: str | Path, batch_size: int = 8,
            device: str = "cpu", cache_dir: str | Path | None = None, progress: bool = True,
            allow_missing_clinical: bool = False) -> dict:
    """Predict the ensemble risk for every patient of ``cohort_dir`` that passes the cohort checks.

    Writes ``out_dir/predictions.json`` (HECKTOR Task-2 format: list of ``{"PatientID", "Prediction"}``,
    Prediction = risk, higher = earlier relapse), ``predictions.csv`` (also listing every patient that
    could not be processed, with the error, and any warning) and ``failures.json`` (PatientID, file, error).
    Patients without a usable clinical row are refused (the fusion model needs it) unless
    ``allow_missing_clinical``; then they are predicted with every clinical value Unknown and flagged.
    An earlier ``predictions.json`` holding a patient who fails now is kept; the new set goes to
    ``predictions.partial.*``. Raises :class:`~hnc_core.guards.NothingPredicted` when no patient is left.
    """
    from hnc_core.guards import NothingPredicted, check_output_dir, prediction_suffix

    out_dir = check_output_dir(out_dir, protected_dirs=[cohort_dir])
    manifest = load_manifest(models_dir)
    data = load_patient_images(cohort_dir, manifest["image_size"], "images", cache_dir, progress)
    warnings = _clinical_gate(data, manifest, allow_missing_clinical)
    write_json_atomic(out_dir / "failures.json", data.failures)
    if not data.ids:
        shown = "; ".join(f"{f['PatientID']}: {f['error']}" for f in data.failures[:3])
        raise NothingPredicted(f"no patient of {cohort_dir} could be predicted ({len(data.failures)} rejected, "
                               f"listed in {out_dir / 'failures.json'}): {shown}")
    risk, fold_risks = ensemble_risk(data, models_dir, manifest, batch_size, device)
    suffix = prediction_suffix(out_dir, [f["PatientID"] for f in data.failures])
    if suffix:
        log.error("%s holds earlier predictions for patients that fail now; keeping it and writing this run's "
                  "%d predictions to predictions%s.json", out_dir / "predictions.json", len(data.ids), suffix)
    preds = [{"PatientID": pid, "Prediction": float(r)} for pid, r in zip(data.ids, risk)]
    write_json_atomic(out_dir / f"predictions{suffix}.json", preds)
    rows = pd.DataFrame(preds).assign(status="ok", error="", warning=[warnings.get(i, "") for i in data.ids])
    fails = pd.DataFrame([{"PatientID": f["PatientID"], "Prediction": np.nan, "status": "failed",
                           "error": f"{f['file']}: {f['error']}", "warning": ""} for f in data.failures])
    table = pd.concat([rows, fails], ignore_index=True) if len(fails) else rows
    write_csv_atomic(table.reindex(columns=["PatientID", "Prediction", "status", "error", "warning"]),
                     out_dir / f"predictions{suffix}.csv")
    return {"ids": data.ids, "risk": risk, "fold_risks": fold_risks, "failures": data.failures, "data": data,
            "manifest": manifest, "warnings": warnings, "partial": bool(suffix)}


def _clinical_gate(data: LoadedCohort, manifest: dict, allow_missing: bool) -> dict[str, str]:
    """Refuse (move to ``data.failures``) or flag patients without clinical data when the model uses it."""
    from hnc_core.guards import clinical_gate

    if manifest.get("mode") == "image":
        return {}
    data.ids, warnings, refused = clinical_gate(data.cohort, data.ids, allow_missing, f"{manifest.get('mode')} model")
    data.failures.extend(refused)
    return warnings


def bundle_predict(**kwargs) -> dict:
    """:func:`predict` for ``inference.json``: the project's own errors end the run with one line."""
    from hnc_core.guards import bundle_entry

    return bundle_entry(predict, (WeightsError,))(**kwargs)
