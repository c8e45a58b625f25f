"""Pure-PyTorch chunked selective scan (fallback without numba, and for CUDA/MPS without mamba-ssm).

Within a chunk of T steps, with S_t = sum_{s<=t} dt_s A (log-decay, (B, D, T, N)):
    x_t = exp(S_t) x_0 + sum_{s<=t} exp(S_t - S_s) dt_s u_s B_s
computed with a masked (T, T) decay matrix (differences only, so no overflow), then y_t = C_t . x_t.
Each chunk runs under activation checkpointing, so memory is O(B D T^2 N) plus the (B, D, L) outputs.
While ``torch.jit.trace`` records the network (TorchScript export), the chunk loop runs as one scripted function,
so the traced graph keeps a loop instead of L / T unrolled copies.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

CHUNK = 16
# chunk of the scripted loop that TorchScript export traces (inference only, no checkpointing): at (1, 256, 4096)
# and (1, 512, 512), N 16, 2 CPU threads, 4-8 steps per chunk ran 2x faster than 16 (T^2 work vs loop overhead)
TRACE_CHUNK = 8


def _chunk(x0: Tensor, u: Tensor, dt: Tensor, A: Tensor, Bc: Tensor, Cc: Tensor) -> tuple[Tensor, Tensor]:
    """One chunk. x0 (B, D, N); u, dt (B, D, T); A (D, N); Bc, Cc (B, D, T, N). Returns y (B, D, T), x_T."""
    S = torch.cumsum(dt[..., None] * A[None, :, None, :], dim=2)
    seg = S[:, :, :, None, :] - S[:, :, None, :, :]  # (B, D, t, s, N)
    T = u.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=u.device).tril()
    W = torch.exp(seg.masked_fill(~causal[None, None, :, :, None], float("-inf")))
    bu = (dt * u)[..., None] * Bc
    x = torch.einsum("bdtsn,bdsn->bdtn", W, bu) + torch.exp(S) * x0[:, :, None, :]
    y = (x * Cc).sum(-1)
    return y, x[:, :, -1]


def _scan_chunks(u: Tensor, dt: Tensor, A: Tensor, Bx: Tensor, Cx: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """The chunk loop of :func:`scan_core_torch` without checkpointing (inference), TorchScript-compatible."""
    batch, dim, length = u.shape
    rep_b, rep_c = dim // Bx.shape[1], dim // Cx.shape[1]
    x = u.new_zeros(batch, dim, A.shape[1])
    ys: list[Tensor] = []
    for l0 in range(0, length, chunk):
        l1 = min(l0 + chunk, length)
        Bc = Bx[..., l0:l1].transpose(2, 3).repeat_interleave(rep_b, dim=1)
        Cc = Cx[..., l0:l1].transpose(2, 3).repeat_interleave(rep_c, dim=1)
        y, x = _chunk(x, u[..., l0:l1], dt[..., l0:l1], A, Bc, Cc)
        ys.append(y)
    return torch.cat(ys, dim=-1), x


_SCRIPTED: list = []


def scripted_scan_chunks():
    """:func:`_scan_chunks` compiled with ``torch.jit.script`` (once per process, on first use)."""
    if not _SCRIPTED:
        _SCRIPTED.append(torch.jit.script(_scan_chunks))
    return _SCRIPTED[0]


def scan_core_torch(u: Tensor, dt: Tensor, A: Tensor, Bx: Tensor, Cx: Tensor, chunk: int = CHUNK):
    """u, dt (B, D, L); A (D, N); Bx, Cx (B, G, N, L). Returns y (B, D, L) and last state (B, D, N)."""
    if torch.jit.is_tracing():
        return scripted_scan_chunks()(u, dt, A, Bx, Cx, TRACE_CHUNK)
    batch, dim, length = u.shape
    rep_b, rep_c = dim // Bx.shape[1], dim // Cx.shape[1]
    x = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for l0 in range(0, length, chunk):
        sl = slice(l0, min(l0 + chunk, length))
        Bc = Bx[..., sl].transpose(2, 3).repeat_interleave(rep_b, dim=1)
        Cc = Cx[..., sl].transpose(2, 3).repeat_interleave(rep_c, dim=1)
        args = (x, u[..., sl], dt[..., sl], A, Bc, Cc)
        if torch.is_grad_enabled() and any(a.requires_grad for a in args):
            y, x = checkpoint(_chunk, *args, use_reentrant=False)
        else:
            y, x = _chunk(*args)
        ys.append(y)
    return torch.cat(ys, dim=-1), x
