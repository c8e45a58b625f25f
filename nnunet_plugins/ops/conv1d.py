"""Causal depthwise conv1d with causal-conv1d's ``causal_conv1d_fn`` signature."""

from __future__ import annotations

import numpy as np
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


class CausalConv1dFn(torch.autograd.Function):
    """Causal depthwise conv1d (+ SiLU) on CPU via numba (:mod:`nnunet_plugins.ops.conv1d_numba`).

    x (B, D, L) float32/float64, weight (D, W), bias (D,) or None, all of x's dtype. Returns (B, D, L).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, silu: bool):
        from nnunet_plugins.ops import conv1d_numba as K

        x, weight = x.contiguous(), weight.contiguous()
        b = x.new_zeros(0) if bias is None else bias.contiguous()
        flags = np.array([bias is not None, bool(silu)])
        out = torch.empty_like(x)
        K.conv_forward(x.detach().numpy(), weight.detach().numpy(), b.detach().numpy(), flags, out.numpy())
        ctx.save_for_backward(x, weight, b)
        ctx.flags = flags
        return out

    @staticmethod
    def backward(ctx, dout):
        from nnunet_plugins.ops import conv1d_numba as K

        x, weight, b = ctx.saved_tensors
        batch, dim, _ = x.shape
        dx = torch.empty_like(x)
        dw = x.new_empty(batch, dim, weight.shape[1])
        db = x.new_empty(batch, dim)
        K.conv_backward(x.detach().numpy(), weight.detach().numpy(), b.detach().numpy(), ctx.flags,
                        dout.to(x.dtype).contiguous().numpy(), dx.numpy(), dw.numpy(), db.numpy())
        return dx, dw.sum(0), (db.sum(0) if ctx.flags[0] else None), None


def _numba_ok(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Shapes/dtypes the numba kernel indexes with (anything else takes the F.conv1d reference)."""
    return (x.dim() == 3 and weight.dim() == 2 and weight.shape[0] == x.shape[1] and weight.shape[1] >= 1
            and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype
            and (bias is None or (bias.dtype == x.dtype and tuple(bias.shape) == (x.shape[1],)))
            and x.device.type == "cpu" and weight.device.type == "cpu"
            and (bias is None or bias.device.type == "cpu"))


@torch.compiler.disable
def causal_conv1d_fn(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """Causal depthwise conv1d: causal-conv1d's CUDA kernel when available, numba kernels on CPU (float32/64),
    else :func:`causal_conv1d_ref`.
    Opaque to ``torch.compile`` (the backend choice and the compiled kernel are not traced)."""
    impl = backend.resolve("conv1d", x.device)
    if impl == "cuda":
        return backend.kernel("conv1d")(x, weight, bias=bias, activation=activation)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    if impl == "numba" and _numba_ok(x, weight, bias):
        return CausalConv1dFn.apply(x, weight, bias, activation is not None)
    return causal_conv1d_ref(x, weight, bias=bias, activation=activation)
