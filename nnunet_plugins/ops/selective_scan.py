"""``selective_scan_fn``: mamba-ssm's signature and semantics on every device.

Shipped as mamba-ssm ships it: :class:`SelectiveScanFn` (autograd Function around the fast numba core),
a thin wrapper :func:`selective_scan_fn` that picks the backend (see :mod:`nnunet_plugins.ops.backend`),
and the sequential reference :func:`~nnunet_plugins.ops.scan_ref.selective_scan_ref` with the same
signature. The wrapper handles delta_bias/softplus, the D skip and the z gate with ordinary torch ops
(elementwise on (B, D, L)), so the custom Function only differentiates the core recurrence.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nnunet_plugins.ops import backend
from nnunet_plugins.ops.scan_ref import compute_dtype, finish_output, prepare_delta, selective_scan_ref


_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def validate_scan_args(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                       z: Tensor | None = None, delta_bias: Tensor | None = None) -> None:
    """Refuse, before any kernel runs, every input mamba-ssm's ``selective_scan_fn`` signature does not define.

    Accepted: u, delta, z (B, D, L); A (D, N) real; B, C each (D, N) | (B, N, L) | (B, G, N, L) with G | D;
    D, delta_bias (D,); floating dtypes (fp16/bf16/fp32/fp64), one device, B, D, L, N >= 1.
    Raises ValueError / TypeError naming the argument and the shapes.
    """
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"selective_scan_fn: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex():
            raise NotImplementedError(f"selective_scan_fn: complex {name} is not supported (real A only)")
        if t.dtype not in _FLOATS:
            raise TypeError(f"selective_scan_fn: {name} has dtype {t.dtype}; expected one of {_FLOATS}")
        if t.device != u.device:
            raise ValueError(f"selective_scan_fn: {name} is on {t.device} but u is on {u.device}")
    if u.dim() != 3:
        raise ValueError(f"selective_scan_fn: u must be (batch, dim, length), got {_shape(u)}")
    batch, dim, length = u.shape
    if min(batch, dim, length) < 1:
        raise ValueError(f"selective_scan_fn: u {_shape(u)} is empty (batch, dim and length must be >= 1)")
    for name in ("delta", "z"):
        t = named[name]
        if t is not None and t.shape != u.shape:
            raise ValueError(f"selective_scan_fn: {name} must have u's shape {_shape(u)}, got {_shape(t)}")
    if A.dim() != 2 or A.shape[0] != dim or A.shape[1] < 1:
        raise ValueError(f"selective_scan_fn: A must be (dim={dim}, d_state), got {_shape(A)}")
    n = A.shape[1]
    for name in ("B", "C"):
        M = named[name]
        ok = ((M.dim() == 2 and tuple(M.shape) == (dim, n))
              or (M.dim() == 3 and tuple(M.shape) == (batch, n, length))
              or (M.dim() == 4 and M.shape[0] == batch and M.shape[1] >= 1 and dim % M.shape[1] == 0
                  and tuple(M.shape[2:]) == (n, length)))
        if not ok:
            raise ValueError(f"selective_scan_fn: {name} must be ({dim}, {n}) constant, ({batch}, {n}, {length}) or "
                             f"({batch}, G, {n}, {length}) with G dividing dim={dim}; got {_shape(M)}")
    for name in ("D", "delta_bias"):
        t = named[name]
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"selective_scan_fn: {name} must be ({dim},), got {_shape(t)}")


def _bc_grouped(M: Tensor, batch: int, dim: int, length: int) -> Tensor:
    """B/C as (B, G, N, L); a constant (D, N) matrix becomes G = D groups."""
    if M.dim() == 2:
        return M[None, :, :, None].expand(batch, dim, M.shape[1], length)
    if M.dim() == 3:
        return M[:, None]
    return M


def _common_groups(Bx: Tensor, Cx: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """(B, G, N, L) B and C with the same G: the kernels index both with one group id per row, so differing
    group counts (e.g. constant B with G = D against shared C with G = 1) are expanded to G = D."""
    if Bx.shape[1] == Cx.shape[1]:
        return Bx, Cx
    return (Bx.repeat_interleave(dim // Bx.shape[1], dim=1) if Bx.shape[1] != dim else Bx,
            Cx.repeat_interleave(dim // Cx.shape[1], dim=1) if Cx.shape[1] != dim else Cx)


def _check_kernel_args(u: Tensor, delta: Tensor, A: Tensor, Bt: Tensor, Ct: Tensor, Dv: Tensor, zz: Tensor,
                       bias: Tensor) -> None:
    """Exact shapes/dtypes the numba kernels index with (no bounds checks inside them)."""
    batch, dim, length = u.shape
    n = A.shape[1]
    want = {"delta": (delta, (batch, dim, length)), "A": (A, (dim, n)),
            "C": (Ct, (batch, Bt.shape[1], length, n)), "B": (Bt, (batch, Bt.shape[1], length, n))}
    for name, (t, shape) in want.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"SelectiveScanFn: {name} has shape {_shape(t)}, the kernel needs {shape}")
    if dim % Bt.shape[1]:
        raise ValueError(f"SelectiveScanFn: {Bt.shape[1]} B/C groups do not divide dim={dim}")
    for name, t, shape in (("D", Dv, (dim,)), ("z", zz, (batch, dim, length)), ("delta_bias", bias, (dim,))):
        if t.numel() and tuple(t.shape) != shape:
            raise ValueError(f"SelectiveScanFn: {name} has shape {_shape(t)}, the kernel needs {shape}")
    for name, t in (("delta", delta), ("A", A), ("B", Bt), ("C", Ct), ("D", Dv), ("z", zz), ("delta_bias", bias)):
        if t.dtype != u.dtype or not t.is_contiguous():
            raise ValueError(f"SelectiveScanFn: {name} must be contiguous {u.dtype} (got {t.dtype})")


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class SelectiveScanFn(torch.autograd.Function):
    """Fused scan on CPU via numba (delta bias/softplus, D skip and z gate inside the kernel).

    u, delta, z: (B, D, L); A: (D, N); Bx, Cx: (B, G, N, L); D, delta_bias: (D,) or None.
    Returns out (B, D, L) and the last state (B, D, N), both in the inputs' dtype (float32/float64).
    """

    @staticmethod
    def forward(ctx, u, delta, A, Bx, Cx, D, z, delta_bias, delta_softplus: bool):
        from nnunet_plugins.ops import scan_numba as K

        batch, dim, length = u.shape
        n_chunks = (length + K.CHUNK - 1) // K.CHUNK
        empty = u.new_zeros(0)
        Dv = empty if D is None else D.contiguous()
        zz = u.new_zeros(0, 0, 0) if z is None else z.contiguous()
        bias = empty if delta_bias is None else delta_bias.contiguous()
        flags = np.array([D is not None, z is not None, delta_bias is not None, bool(delta_softplus)])
        Bt, Ct = Bx.transpose(2, 3).contiguous(), Cx.transpose(2, 3).contiguous()  # (B, G, L, N)
        u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
        _check_kernel_args(u, delta, A, Bt, Ct, Dv, zz, bias)
        out = torch.empty_like(u)
        last = u.new_empty(batch, dim, A.shape[1])
        ckpt = u.new_empty(batch, dim, n_chunks, A.shape[1])
        K.scan_forward(_np(u), _np(delta), _np(A), _np(Bt), _np(Ct), _np(Dv), _np(zz), _np(bias), flags,
                       out.numpy(), last.numpy(), ckpt.numpy(), K.CHUNK)
        ctx.save_for_backward(u, delta, A, Bt, Ct, Dv, zz, bias, ckpt)
        ctx.flags = flags
        ctx.has = (D is not None, z is not None, delta_bias is not None)
        ctx.mark_non_differentiable(last)
        return out, last

    @staticmethod
    def backward(ctx, dout, _dlast):
        from nnunet_plugins.ops import scan_numba as K

        u, delta, A, Bt, Ct, Dv, zz, bias, ckpt = ctx.saved_tensors
        batch, dim, length = u.shape
        groups = Bt.shape[1]
        parts = max(1, min(dim // groups, -(-2 * K.num_threads() // (batch * groups))))
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dz = torch.empty_like(zz)
        dA = u.new_zeros(batch, dim, A.shape[1])
        dBp = u.new_zeros(batch, groups, parts, length, A.shape[1])
        dCp = torch.zeros_like(dBp)
        dD, dbias = u.new_zeros(batch, dim), u.new_zeros(batch, dim)
        K.scan_backward(_np(u), _np(delta), _np(A), _np(Bt), _np(Ct), _np(Dv), _np(zz), _np(bias), ctx.flags,
                        _np(ckpt), _np(dout.to(u.dtype)), du.numpy(), ddelta.numpy(), dz.numpy(), dA.numpy(),
                        dBp.numpy(), dCp.numpy(), dD.numpy(), dbias.numpy(), K.CHUNK)
        has_d, has_z, has_bias = ctx.has
        return (du, ddelta, dA.sum(0), dBp.sum(2).transpose(2, 3), dCp.sum(2).transpose(2, 3),
                dD.sum(0) if has_d else None, dz if has_z else None, dbias.sum(0) if has_bias else None, None)


@torch.compiler.disable
def selective_scan_fn(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                      z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                      return_last_state: bool = False):
    """Selective scan with mamba-ssm's signature (see :func:`selective_scan_ref` for the maths).

    u, delta, z: (B, D, L); A: (D, N) real; B, C: (B, N, L), grouped (B, G, N, L) or constant (D, N);
    D, delta_bias: (D,). Returns out (dtype of u) [, last state (B, D, N)]. Computes in float32
    (float64 if an input is float64), whatever the autocast state.

    Opaque to ``torch.compile`` (``torch.compiler.disable``): the compiler never traces the backend choice or
    the portable scan's per-chunk loop, so compile time and graph size do not grow with L.
    """
    validate_scan_args(u, delta, A, B, C, D, z, delta_bias)
    impl = backend.resolve("scan", u.device)
    if impl == "cuda":
        return backend.kernel("scan")(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                      delta_softplus=delta_softplus, return_last_state=return_last_state)
    if impl == "reference":
        return selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                                  return_last_state=return_last_state)
    cdt = compute_dtype(u, delta, A, B, C)
    batch, dim, length = u.shape
    with torch.autocast(device_type=u.device.type, enabled=False):
        cast = [None if t is None else t.to(cdt) for t in (u, delta, A, B, C, D, z, delta_bias)]
        uc, dc, Ac, Bc, Cc, Dc, zc, bc = cast
        Bx, Cx = _common_groups(_bc_grouped(Bc, batch, dim, length), _bc_grouped(Cc, batch, dim, length), dim)
        if impl == "numba":
            out, last = SelectiveScanFn.apply(uc, dc, Ac, Bx, Cx, Dc, zc, bc, delta_softplus)
        else:
            from nnunet_plugins.ops.scan_torch import scan_core_torch

            y, last = scan_core_torch(uc, prepare_delta(dc, bc, delta_softplus), Ac, Bx, Cx)
            out = finish_output(y, uc, Dc, zc)
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out
