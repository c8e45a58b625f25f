"""Training of one fold's network: Cox loss, best-epoch snapshot (deep copy), optional DDP."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from survival_head.rfs.config import DEFAULTS as D
from survival_head.rfs.loss import CoxPHLoss

log = logging.getLogger(__name__)


class BestCheckpoint:
    """Keep a deep copy of the best weights seen so far (by a score, higher = better).

    The snapshot is ``copy.deepcopy`` of the state dict, detached from the live parameters, so
    training after the snapshot cannot change what :meth:`restore` loads back.
    """

    def __init__(self):
        self.score = -float("inf")
        self.epoch = -1
        self.state: dict | None = None

    def update(self, score: float, model: nn.Module, epoch: int) -> bool:
        s = float(np.nan_to_num(score, nan=-1.0))
        if self.state is None or s > self.score:
            self.score, self.epoch = s, epoch
            self.state = copy.deepcopy({k: v.detach().clone() for k, v in _unwrap(model).state_dict().items()})
            return True
        return False

    def restore(self, model: nn.Module) -> nn.Module:
        if self.state is None:
            raise RuntimeError("no snapshot to restore")
        _unwrap(model).load_state_dict(copy.deepcopy(self.state))
        return model


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@dataclass
class TrainConfig:
    """Training budget and optimiser; ``freeze_backbone`` trains only the MLPs on cached CNN features."""

    max_epochs: int = D.max_epochs
    batch_size: int = D.batch_size
    lr: float = D.lr
    weight_decay: float = D.weight_decay
    ties: str = "efron"
    seed: int = D.seed
    device: str = "cpu"
    freeze_backbone: bool = D.freeze_backbone
    distributed: bool = False
    progress: bool = True


def predict_risk(net: nn.Module, images: torch.Tensor, clinical: torch.Tensor, batch_size: int = 8,
                 device: str = "cpu", features: bool = False) -> np.ndarray:
    """Network risk (n,) or fused features (n, 128) in eval mode under ``torch.inference_mode``."""
    net = _unwrap(net).eval().to(device)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x, c = images[i:i + batch_size].to(device), clinical[i:i + batch_size].to(device)
            out.append((net.features(x, c) if features else net(x, c)[:, 0]).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 128) if features else (0,))


def _batches(n: int, batch_size: int, gen: torch.Generator, sampler=None) -> list[torch.Tensor]:
    order = torch.tensor(list(iter(sampler))) if sampler is not None else torch.randperm(n, generator=gen)
    out = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in out if len(b) > 1]  # BatchNorm needs 2+ samples


def train_network(net: nn.Module, train: dict, val: dict, cfg: TrainConfig) -> tuple[nn.Module, dict]:
    """Train ``net`` on ``train`` (dict image/clinical/time/event tensors), keep the best validation epoch.

    Validation score: Harrell's C of the network risk on ``val``. Returns the restored best network
    and a history dict (losses, validation C per epoch, best epoch).
    """
    from sksurv.metrics import concordance_index_censored
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = net.to(cfg.device)
    x_key = "image"
    if cfg.freeze_backbone:  # train the MLPs on cached (n, 512) backbone outputs
        from survival_head.rfs.network import HeadOnly

        net.backbone.requires_grad_(False)
        model, sampler, x_key = HeadOnly(net), None, "image_features"
    else:
        model, sampler = _maybe_ddp(net, len(train["time"]), cfg)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = CoxPHLoss(cfg.ties)
    best, hist = BestCheckpoint(), {"loss": [], "val_cindex": []}
    ve, vt = val["event"].numpy().astype(bool), val["time"].numpy()
    for epoch in tqdm(range(cfg.max_epochs), desc="epochs", unit="epoch", disable=not cfg.progress, leave=False):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        losses = []
        for idx in _batches(len(train["time"]), cfg.batch_size, gen, sampler):
            risk = model(train[x_key][idx].to(cfg.device), train["clinical"][idx].to(cfg.device))
            loss = loss_fn(risk, train["time"][idx].to(cfg.device), train["event"][idx].to(cfg.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        vr = predict_risk(model, val[x_key], val["clinical"], cfg.batch_size, cfg.device)
        c = concordance_index_censored(ve, vt, vr)[0] if ve.any() and len(vr) > 1 else float("nan")
        hist["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        hist["val_cindex"].append(float(c))
        best.update(c, net, epoch)
    best.restore(net)
    hist["best_epoch"], hist["best_val_cindex"] = best.epoch, best.score
    return net.eval(), hist


def _maybe_ddp(net: nn.Module, n: int, cfg: TrainConfig):
    """Wrap in DistributedDataParallel with a DistributedSampler when ``cfg.distributed``."""
    if not cfg.distributed:
        return net, None
    import torch.distributed as dist
    from torch.utils.data.distributed import DistributedSampler

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    sampler = DistributedSampler(range(n), shuffle=True, seed=cfg.seed)
    ids = [torch.device(cfg.device).index] if torch.device(cfg.device).type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True)
    return ddp, sampler
