"""Causal depthwise conv1d with causal-conv1d's ``causal_conv1d_fn`` signature."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nnunet_plugins.ops import backend

_ACTIVATIONS = (None, "silu", "swish")


def causal_conv1d_ref(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """x (B, D, L), weight (D, W), bias (D,): out_l = sum_k w_k x_{l-W+1+k} (+ bias), optional SiLU."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    width = weight.shape[-1]
    out = F.conv1d(F.pad(x, (width - 1, 0)), weight.unsqueeze(1).to(x.dtype),
                   None if bias is None else bias.to(x.dtype), groups=x.shape[1])
    return F.silu(out) if activation else out


@torch.compiler.disable
def causal_conv1d_fn(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """Causal depthwise conv1d: causal-conv1d's CUDA kernel when available, else :func:`causal_conv1d_ref`.
    Opaque to ``torch.compile`` (the backend choice and the compiled kernel are not traced)."""
    if backend.resolve("conv1d", x.device) == "cuda":
        return backend.kernel("conv1d")(x, weight, bias=bias, activation=activation)
    return causal_conv1d_ref(x, weight, bias=bias, activation=activation)
