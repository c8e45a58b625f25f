"""Pure-PyTorch sequential selective scan: the readable definition every fast path is tested against.

Same signature and semantics as mamba-ssm's ``selective_scan_fn`` (real ``A`` only). It materialises
``(B, D, L, N)`` tensors and loops over ``L`` in Python: slow, but obviously right.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any input is float64 (gradcheck), float32 otherwise (fp16/bf16 are upcast)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def expand_bc(M: Tensor, batch: int, dim: int, length: int) -> Tensor:
    """B/C as (batch, dim, N, L): accepts (D, N) constant, (B, N, L) shared or (B, G, N, L) grouped."""
    if M.dim() == 2:  # not input-dependent: (D, N)
        return M[None, :, :, None].expand(batch, dim, M.shape[1], length)
    if M.dim() == 3:
        return M[:, None].expand(batch, dim, M.shape[1], length)
    groups = M.shape[1]
    if dim % groups:
        raise ValueError(f"d_inner={dim} is not divisible by the number of B/C groups {groups}")
    return M.repeat_interleave(dim // groups, dim=1)


def prepare_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """delta (+ bias[:, None]) then optional softplus; (B, D, L)."""
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(delta.dtype)
    return F.softplus(delta) if delta_softplus else delta


def finish_output(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """out = (y + u * D) * silu(z), all (B, D, L)."""
    out = y if D is None else y + u * D[..., None].to(y.dtype)
    return out if z is None else out * F.silu(z.to(out.dtype))


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                       z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                       return_last_state: bool = False):
    """Sequential selective scan. u, delta, z: (B, D, L); A: (D, N); B, C: (D, N) | (B, N, L) | (B, G, N, L).

    x_l = exp(delta_l A) x_{l-1} + delta_l B_l u_l,  y_l = C_l . x_l;  out = (y + D u) * silu(z).
    Returns out (dtype of u) and, if asked, the last state (B, D, N) in the compute dtype.
    """
    if A.is_complex():
        raise NotImplementedError("complex A is not supported")
    dtype_in = u.dtype
    cdt = compute_dtype(u, delta, A, B, C)
    u, delta, A = u.to(cdt), delta.to(cdt), A.to(cdt)
    delta = prepare_delta(delta, None if delta_bias is None else delta_bias.to(cdt), delta_softplus)
    batch, dim, length = u.shape
    Bx = expand_bc(B.to(cdt), batch, dim, length)
    Cx = expand_bc(C.to(cdt), batch, dim, length)
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, Bx, u)
    x = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for i in range(length):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(torch.einsum("bdn,bdn->bd", x, Cx[:, :, :, i]))
    y = torch.stack(ys, dim=2)
    out = finish_output(y, u, None if D is None else D.to(cdt), z)
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out
