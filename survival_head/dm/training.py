"""Two-stage DM training inside one fold, cross-validation and the fitted-model container.

Stage 1 (image branch, end-to-end): encoder + projection + auxiliary head trained on the training
patients' crops for ``max_epochs`` epochs (BCE with ``pos_weight = n_neg / n_pos``, left-right flips).
Stage 2 (fusion): the encoder is frozen; the fusion MLP is trained full-batch on
[deep embedding, 36 selected radiomics, clinical vector], for a number of epochs chosen on an inner
stratified 20 % of the training rows (``head_inner_val``; 0 = always ``head_epochs``). Selector and
clinical encoder are fitted on the training rows only. Fold threshold: Youden on the inner 20 %'s
out-of-sample head predictions (in-sample training predictions only when no inner split is possible).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from hnc_core.io import write_json_atomic
from survival_head.dm.data import DMData
from survival_head.dm.metrics import youden_threshold
from survival_head.dm.network import DMFusionNet
from survival_head.features.clinical import DM_CATEGORICAL, DM_NUMERIC, ClinicalEncoder
from survival_head.io.checkpoints import load_weights, save_weights, verify_integrity, write_integrity
from survival_head.radiomics.selection import RadiomicsSelector

log = logging.getLogger(__name__)
MODALITIES = ("image", "radiomics", "clinical")
WEIGHTS_NAME, META_NAME = "model.pt", "model_meta.json"


@dataclass
class DMConfig:
    """Hyper-parameters (sizes in voxels, ``fov_mm``/``ring_mm`` in mm)."""

    image_size: int = 64
    fov_mm: float = 96.0
    backbone: str = "swin"
    feature_size: int = 12
    window_size: int = 7
    deep_dim: int = 8
    hidden: int = 16
    dropout: float = 0.3
    max_epochs: int = 5
    batch_size: int = 8
    lr: float = 3e-4
    head_epochs: int = 300
    head_lr: float = 3e-3
    head_inner_val: float = 0.2
    weight_decay: float = 1e-2
    k: int = 36
    corr_threshold: float = 0.9
    selection: str = "stability"  # radiomics ranking: "stability" (bootstrap L1 logistic) or "rf"
    k_by_cv: bool = True  # choose the number of radiomics features (<= k) by inner CV
    n_folds: int = 5
    seed: int = 0
    include_nodes: bool = True
    ring_mm: float = 8.0

    @classmethod
    def from_dict(cls, d: dict) -> "DMConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _pos_weight(y: np.ndarray) -> torch.Tensor:
    n_pos = max(int(y.sum()), 1)
    return torch.tensor(max(len(y) - n_pos, 1) / n_pos, dtype=torch.float32)


def _new_net(cfg: DMConfig, in_channels: int, n_rad: int, n_clin: int, modalities) -> DMFusionNet:
    return DMFusionNet(in_channels, n_rad, n_clin, cfg.backbone, cfg.feature_size, cfg.deep_dim, cfg.hidden,
                       cfg.dropout, "image" in modalities, "radiomics" in modalities, "clinical" in modalities,
                       window_size=cfg.window_size)


def make_config(**overrides) -> DMConfig:
    """DMConfig with keyword overrides (``None`` values ignored)."""
    return dataclasses.replace(DMConfig(), **{k: v for k, v in overrides.items() if v is not None})


class _DeepLogit(torch.nn.Module):
    """``forward = net.deep_logit`` so DDP can wrap the image branch."""

    def __init__(self, net: DMFusionNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.deep_logit(x)


def train_image_branch(net: DMFusionNet, images: torch.Tensor, y: np.ndarray, cfg: DMConfig, progress=False,
                       device: str | torch.device = "cpu"):
    """Stage 1: train encoder + projection + auxiliary head on ``images`` (N, C, S, S, S).

    Under an initialised ``torch.distributed`` process group (torchrun) the model is wrapped in DDP and
    each rank sees its ``DistributedSampler`` shard.
    """
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    from survival_head.dm.transforms import RandLeftRightFlip

    device = torch.device(device)
    net.to(device)
    model: torch.nn.Module = _DeepLogit(net)
    ds = TensorDataset(images, torch.as_tensor(y, dtype=torch.float32))
    sampler = None
    if dist.is_available() and dist.is_initialized():
        from torch.nn.parallel import DistributedDataParallel as DDP

        sampler = DistributedSampler(ds, shuffle=True, seed=cfg.seed)
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=True)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=torch.Generator().manual_seed(cfg.seed) if sampler is None else None)
    params = [p for n, p in net.named_parameters() if not n.startswith("head.")]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=_pos_weight(y).to(device))
    flip = RandLeftRightFlip(0.5, cfg.seed)
    model.train()
    for epoch in tqdm(range(cfg.max_epochs), desc="image branch", unit="epoch", disable=not progress, leave=False):
        if sampler is not None:
            sampler.set_epoch(epoch)
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(flip(xb.to(device))), yb.to(device)).backward()
            opt.step()
    net.to("cpu")
    net.eval()


@torch.no_grad()
def embed(net: DMFusionNet, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Deep embeddings (N, deep_dim) in eval mode."""
    net.eval()
    return torch.cat([net.encode(images[b:b + batch]) for b in range(0, len(images), batch)])


def _fit_head(net: DMFusionNet, deep, rad, clin, y: np.ndarray, cfg: DMConfig, epochs: int,
              val: tuple | None = None) -> list[float]:
    """Full-batch AdamW on the fusion MLP for ``epochs``; returns the AUC on ``val`` after each epoch."""
    from sklearn.metrics import roc_auc_score

    opt = torch.optim.AdamW(net.head.parameters(), lr=cfg.head_lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=_pos_weight(y))
    yt = torch.as_tensor(y, dtype=torch.float32)
    aucs = []
    for _ in range(epochs):
        net.train()
        opt.zero_grad()
        loss_fn(net.fuse(deep, rad, clin), yt).backward()
        opt.step()
        if val is not None:
            net.eval()
            with torch.no_grad():
                logit = net.fuse(*val[:3]).numpy()
            aucs.append(float(roc_auc_score(val[3], logit)))
            if len(val) > 4:  # collect the inner part's out-of-sample probabilities per epoch
                val[4].append(1.0 / (1.0 + np.exp(-logit.astype(float))))
    net.eval()
    return aucs


def head_epochs_by_inner_split(net: DMFusionNet, deep, rad, clin, y: np.ndarray, cfg: DMConfig) -> int:
    """Number of head epochs (1..``head_epochs``) with the best AUC on an inner stratified part
    (``head_inner_val``) of the training rows; a copy of ``net`` is trained, ``net`` is left untouched.

    Full-batch training of the head on ~100 patients overfits within tens of epochs; this picks the
    stopping point from the training fold only (the fold's test patients are never seen).
    """
    return head_epochs_and_inner_predictions(net, deep, rad, clin, y, cfg)[0]


def head_epochs_and_inner_predictions(net: DMFusionNet, deep, rad, clin, y: np.ndarray, cfg: DMConfig):
    """``(epochs, y_inner, p_inner)``: the epoch choice of :func:`head_epochs_by_inner_split` and the inner
    part's out-of-sample P(DM) at that epoch (``None`` when no inner split is possible)."""
    import copy

    from sklearn.model_selection import train_test_split

    y = np.asarray(y).astype(int)
    idx = np.arange(len(y))
    if cfg.head_inner_val <= 0 or min(y.sum(), len(y) - y.sum()) < 4:
        return cfg.head_epochs, None, None
    fit, val = train_test_split(idx, test_size=cfg.head_inner_val, stratify=y, random_state=cfg.seed)
    pick = (lambda t, i: None if t is None else t[torch.as_tensor(i)])
    trial = copy.deepcopy(net)
    probs: list[np.ndarray] = []
    aucs = _fit_head(trial, pick(deep, fit), pick(rad, fit), pick(clin, fit), y[fit], cfg, cfg.head_epochs,
                     (pick(deep, val), pick(rad, val), pick(clin, val), y[val], probs))
    epochs = best_smoothed_epoch(aucs)
    return epochs, y[val], probs[epochs - 1]


def moving_average(x, window: int = 5) -> np.ndarray:
    """Centred moving average that averages only the values present at the ends (no zero padding).

    Zero-padded ``np.convolve(..., mode="same")`` pulls the first and last ``window // 2`` values towards 0,
    which biased the chosen head epoch away from early epochs.
    """
    x = np.asarray(x, float)
    k = np.ones(int(window))
    return np.convolve(x, k, mode="same") / np.convolve(np.ones_like(x), k, mode="same")


def best_smoothed_epoch(aucs, window: int = 5) -> int:
    """1-based epoch with the best ``window``-epoch moving-average AUC (the inner part is small)."""
    return int(np.argmax(moving_average(aucs, window))) + 1


def train_head(net: DMFusionNet, deep, rad, clin, y: np.ndarray, cfg: DMConfig) -> int:
    """Stage 2: full-batch training of the fusion MLP only (encoder frozen); returns the epochs used."""
    return train_head_with_threshold(net, deep, rad, clin, y, cfg)[0]


def train_head_with_threshold(net: DMFusionNet, deep, rad, clin, y: np.ndarray, cfg: DMConfig):
    """Stage 2 plus the fold threshold: ``(epochs, threshold, source)``. The threshold is Youden's J on the
    inner part's out-of-sample predictions (``source="inner_out_of_sample"``); without an inner split, on
    the training rows' in-sample predictions (``"in_sample"``, optimistic)."""
    epochs, y_in, p_in = head_epochs_and_inner_predictions(net, deep, rad, clin, y, cfg)
    _fit_head(net, deep, rad, clin, y, cfg, epochs)
    if y_in is not None and 0 < y_in.sum() < len(y_in):
        return epochs, youden_threshold(y_in, p_in), "inner_out_of_sample"
    return epochs, None, "in_sample"


@dataclass
class FittedDM:
    """A trained DM model with its fitted preprocessing and threshold."""

    config: DMConfig
    modalities: tuple[str, ...]
    net: DMFusionNet
    selector: RadiomicsSelector
    encoder: ClinicalEncoder
    threshold: float = 0.5
    info: dict = field(default_factory=dict)

    def tabular(self, data: DMData) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.from_numpy(self.selector.transform(data.radiomics))
        c = torch.from_numpy(self.encoder.transform(data.clinical))
        return r, c

    @torch.no_grad()
    def predict_proba(self, data: DMData, deep: torch.Tensor | None = None) -> np.ndarray:
        """P(DM) per patient, shape (N,); ``deep`` = precomputed embeddings of ``data.images``."""
        r, c = self.tabular(data)
        d = None
        if "image" in self.modalities:
            d = deep if deep is not None else embed(self.net, data.images)
        self.net.eval()
        return torch.sigmoid(self.net.fuse(d, r, c)).numpy().astype(float)

    def save(self, model_dir: str | Path) -> dict:
        """Write ``model.pt`` (state dict) and ``model_meta.json`` (config, sha256, threshold, selector, encoder)."""
        model_dir = Path(model_dir)
        sha = save_weights(self.net.state_dict(), model_dir / WEIGHTS_NAME)
        meta = {"format": "hnc-petct-dm/1", "weights": WEIGHTS_NAME, "sha256": sha,
                "config": dataclasses.asdict(self.config), "modalities": list(self.modalities),
                "threshold": self.threshold, "in_channels": int(self.info.get("in_channels", 3)),
                "selector": self.selector.to_dict(), "clinical_encoder": self.encoder.to_dict(), "info": self.info}
        write_json_atomic(model_dir / META_NAME, meta)
        write_integrity(model_dir, [WEIGHTS_NAME, META_NAME])  # selector, encoder, threshold live in the meta
        return meta

    @classmethod
    def load(cls, model_dir: str | Path, sha256: str | None = None) -> "FittedDM":
        """Rebuild from ``model_meta.json`` and verified weights (``WeightsError`` if missing/corrupt).

        ``integrity.json`` must cover both files (weights, and the meta holding selector, encoder, threshold);
        ``sha256``, if given, additionally pins the weights file.
        """
        from survival_head.io.checkpoints import WeightsError

        model_dir = Path(model_dir)
        meta_path = model_dir / META_NAME
        if not meta_path.is_file():
            raise WeightsError(f"model metadata not found: {meta_path} (train the bundle first)")
        if sha256:
            from survival_head.io.checkpoints import check_sha256

            check_sha256(model_dir / WEIGHTS_NAME, sha256)
        verify_integrity(model_dir, [WEIGHTS_NAME, META_NAME])
        meta = json.loads(meta_path.read_text())
        cfg = DMConfig.from_dict(meta["config"])
        sel = RadiomicsSelector.from_dict(meta["selector"])
        enc = ClinicalEncoder.from_dict(meta["clinical_encoder"])
        net = _new_net(cfg, int(meta["in_channels"]), len(sel.selected_), len(enc.feature_names_), meta["modalities"])
        state = load_weights(model_dir / meta["weights"], sha256 or meta["sha256"])
        net.load_state_dict(state)
        net.eval()
        return cls(cfg, tuple(meta["modalities"]), net, sel, enc, float(meta["threshold"]), meta.get("info", {}))


def fit_fold(data: DMData, train_idx, cfg: DMConfig, modality_sets, progress=False,
             device="cpu") -> tuple[dict[str, FittedDM], DMFusionNet | None]:
    """Fit selector, encoder, image branch (once) and one fusion head per modality set on ``train_idx``.

    Returns ``({modality-set name: FittedDM}, stage-1 network or None)``.
    """
    tr = data.subset(train_idx)
    torch.manual_seed(cfg.seed)
    sel = RadiomicsSelector(cfg.corr_threshold, cfg.k, random_state=cfg.seed, method=cfg.selection,
                            k_by_cv=cfg.k_by_cv).fit(tr.radiomics, tr.y)
    enc = ClinicalEncoder(numeric=DM_NUMERIC, categorical=DM_CATEGORICAL).fit(tr.clinical)
    r, c = torch.from_numpy(sel.transform(tr.radiomics)), torch.from_numpy(enc.transform(tr.clinical))
    in_ch = int(data.images.shape[1])
    base = None
    if any("image" in m for m in modality_sets):
        base = _new_net(cfg, in_ch, r.shape[1], c.shape[1], MODALITIES)
        train_image_branch(base, tr.images, tr.y, cfg, progress, device)
        deep_tr = embed(base, tr.images)
    out = {}
    for mods in modality_sets:
        torch.manual_seed(cfg.seed + 1)
        net = _new_net(cfg, in_ch, r.shape[1], c.shape[1], mods)
        d = None
        if "image" in mods:
            net.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("head.")},
                                strict=False)
            d = deep_tr
        epochs, thr, source = train_head_with_threshold(net, d, r, c, tr.y, cfg)
        fitted = FittedDM(cfg, tuple(mods), net, sel, enc, info={"in_channels": in_ch, "n_train": len(tr.ids),
                                                                 "head_epochs_used": epochs,
                                                                 "fold_threshold_source": source})
        fitted.threshold = thr if thr is not None else youden_threshold(tr.y, fitted.predict_proba(tr, d))
        out["+".join(mods)] = fitted
    return out, base


def cross_validate(data: DMData, cfg: DMConfig, modality_sets=(MODALITIES,), progress: bool = True,
                   device="cpu") -> dict:
    """Patient-level stratified K-fold CV. Returns OOF probabilities/classes per modality set and fold records."""
    skf = StratifiedKFold(n_splits=cfg.n_folds, shuffle=True, random_state=cfg.seed)
    names = ["+".join(m) for m in modality_sets]
    oof = {n: np.full(len(data.ids), np.nan) for n in names}
    cls = {n: np.zeros(len(data.ids), int) for n in names}
    folds = []
    splits = list(skf.split(np.zeros(len(data.y)), data.y))
    for k, (tr, te) in enumerate(tqdm(splits, desc="CV folds", unit="fold", disable=not progress)):
        fitted, base = fit_fold(data, tr, cfg, modality_sets, progress, device)
        test = data.subset(te)
        deep_te = embed(base, test.images) if base is not None else None
        rec = {"fold": k, "train_ids": [data.ids[i] for i in tr], "test_ids": test.ids, "thresholds": {}}
        for n, f in fitted.items():
            oof[n][te] = f.predict_proba(test, deep_te)
            cls[n][te] = (oof[n][te] >= f.threshold).astype(int)
            rec["thresholds"][n] = f.threshold
        any_f = next(iter(fitted.values()))
        rec["selector"], rec["clinical_encoder"] = any_f.selector, any_f.encoder
        folds.append(rec)
    return {"ids": data.ids, "y": data.y, "oof": oof, "pred_class": cls, "folds": folds}
