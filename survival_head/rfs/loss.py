"""Cox partial-likelihood loss for mini-batches (Efron or Breslow ties)."""

from __future__ import annotations

import torch
from torch import nn


def cox_partial_nll(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str = "efron",
                    reduction: str = "mean") -> torch.Tensor:
    """Negative Cox log partial likelihood.

    Parameters
    ----------
    risk : (B,) or (B, 1) log-hazard (higher = earlier event).
    time : (B,) follow-up in days.
    event : (B,) 1 = event observed, 0 = censored.
    ties : ``"efron"`` or ``"breslow"``.
    reduction : ``"mean"`` (divided by the number of events), ``"sum"``, or ``"n_samples"``
        (divided by the batch size, as scikit-survival's ``CoxPHOptimizer.nlog_likelihood``).

    A batch without events has no partial likelihood: the loss is 0, still attached to the graph
    (``0 * risk.sum()``) so ``backward`` works and contributes no gradient.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    risk = risk.reshape(-1)
    time = time.reshape(-1).to(risk.dtype)
    event = event.reshape(-1).to(risk.dtype)
    if event.sum() == 0:
        return 0.0 * risk.sum()
    shift = risk.detach().max()
    w = torch.exp(risk - shift)                                   # (B,)
    ev_times = torch.unique(time[event > 0])                      # (T,)
    at_risk = (time[None, :] >= ev_times[:, None]).to(risk.dtype)  # (T, B)
    dead = ((time[None, :] == ev_times[:, None]) & (event[None, :] > 0)).to(risk.dtype)  # (T, B)
    d = dead.sum(1)                                               # (T,) events per time
    s_risk = at_risk @ w                                          # (T,)
    s_dead = dead @ w
    num = (dead @ risk).sum()
    if ties == "breslow":
        denom = (d * (torch.log(s_risk) + shift)).sum()
    else:
        max_d = int(d.max().item())
        ls = torch.arange(max_d, dtype=risk.dtype, device=risk.device)       # (L,)
        valid = (ls[None, :] < d[:, None]).to(risk.dtype)                     # (T, L)
        frac = ls[None, :] / d[:, None]
        terms = s_risk[:, None] - frac * s_dead[:, None]
        terms = torch.where(valid > 0, terms, torch.ones_like(terms))
        denom = ((torch.log(terms) + shift) * valid).sum()
    nll = -(num - denom)
    if reduction == "sum":
        return nll
    if reduction == "n_samples":
        return nll / risk.numel()
    return nll / event.sum()


class CoxPHLoss(nn.Module):
    """``nn.Module`` form of :func:`cox_partial_nll`: ``loss(risk, time, event)``."""

    def __init__(self, ties: str = "efron", reduction: str = "mean"):
        super().__init__()
        if ties not in ("efron", "breslow"):
            raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
        self.ties = ties
        self.reduction = reduction

    def forward(self, risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
        return cox_partial_nll(risk, time, event, self.ties, self.reduction)
