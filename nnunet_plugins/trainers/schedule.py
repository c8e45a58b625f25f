"""Optimiser parameter groups and the warm-up + poly learning-rate schedule."""

from __future__ import annotations

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on weights (ndim > 1), none on biases, norm scales and parameters
    flagged ``_no_weight_decay`` (Mamba's A_log and D)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or getattr(p, "_no_weight_decay", False) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class WarmupPolyLR(_LRScheduler):
    """lr(e) = lr0 (e + 1) / warmup for e < warmup, else lr0 (1 - (e - warmup) / (max - warmup)) ** 0.9.

    Stepped once per epoch with the epoch index, like nnU-Net's PolyLRScheduler (``step(epoch)``)."""

    def __init__(self, optimizer: Optimizer, initial_lr: float, max_steps: int, warmup: int = 0,
                 exponent: float = 0.9, current_step: int | None = None):
        self.initial_lr, self.max_steps, self.warmup, self.exponent = initial_lr, max_steps, warmup, exponent
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.initial_lr * (step + 1) / self.warmup
        span = max(self.max_steps - self.warmup, 1)
        return self.initial_lr * max(1 - (step - self.warmup) / span, 0.0) ** self.exponent

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = self.lr_at(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr] * len(self.optimizer.param_groups)
