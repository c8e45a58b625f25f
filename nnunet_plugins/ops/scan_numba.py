"""Numba CPU kernels for the core selective scan ``y_l = C_l . x_l``, ``x_l = exp(dt_l A) x_{l-1} + dt_l u_l B_l``.

Layout: u, dt, y: (Bt, D, L); A: (D, N); Bm, Cm: (Bt, G, L, N) (time-major so the N-state of one step is
contiguous); G divides D, row d uses group d // (D // G).

Speed comes from three things:
* the state of one row (N floats) stays in registers/L1 for the whole sequence; nothing of size
  (B, D, L, N) is ever materialised;
* exp(dt A) for a chunk of T steps is computed first into a small (T, N) buffer by a branch-free,
  SIMD-vectorisable exp (Cody-Waite range reduction + degree-7 polynomial + exponent bit-cast),
  then the recurrence runs over the chunk;
* rows run in parallel (``prange``); the backward recomputes each chunk's states from a per-chunk
  checkpoint (forward stores the state at chunk starts: (Bt, D, L/T, N)), so its memory is O(T N) per row;
* delta bias + softplus, the D skip and the z gate are fused in (vectorised per chunk).
float64 inputs use ``math.exp`` (exact, for gradcheck).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from nnunet_plugins.ops import numba_cache

# cache=True crashes without a writable cache folder (read-only container): see numba_cache
CACHE, CACHE_DIR = numba_cache.choose(__file__)
CHUNK = 64  # steps per chunk: (CHUNK, N) buffers of exp and states fit in L1

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_HI = np.float32(88.0)
_LO = np.float32(-87.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_P = tuple(np.float32(1.0 / math.factorial(k)) for k in range(8))  # exp Taylor coefficients


@intrinsic
def _bits_to_f32(typingctx, bits):
    """Reinterpret an int32 as float32 (a no-op LLVM bitcast; vectorises)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


@njit(inline="always", fastmath=True)
def _fexp32(x):
    """exp(x) for float32, ~2 ulp on [-87, 88]; clamps outside (exp(-87) ~ 1.6e-38 acts as 0)."""
    x = min(max(x, _LO), _HI)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI - k * _LN2_LO
    p = _P[7]
    p = p * r + _P[6]
    p = p * r + _P[5]
    p = p * r + _P[4]
    p = p * r + _P[3]
    p = p * r + _P[2]
    p = p * r + _P[1]
    p = p * r + _ONE
    return p * _bits_to_f32((np.int32(k) + np.int32(127)) << np.int32(23))


def _exp(x):  # pragma: no cover - replaced by the overload inside jitted code
    return math.exp(x)


@overload(_exp, inline="always")
def _exp_overload(x):
    if x == types.float32:
        return lambda x: _fexp32(x)
    return lambda x: math.exp(x)


_ZERO = np.float32(0.0)
_TWO = np.float32(2.0)
_ATANH = tuple(np.float32(2.0 / (2 * k + 1)) for k in range(8))  # log1p(e) = 2 atanh(e / (2 + e))


@njit(inline="always", fastmath=True)
def _softplus32(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), branch-free; ~1e-7 relative."""
    e = _fexp32(-abs(x))
    s = e / (_TWO + e)
    s2 = s * s
    p = _ATANH[7]
    for k in range(6, -1, -1):
        p = p * s2 + _ATANH[k]
    return max(x, _ZERO) + s * p


def _softplus(x):  # pragma: no cover - overloaded
    return math.log1p(math.exp(x))


@overload(_softplus, inline="always")
def _softplus_overload(x):
    if x == types.float32:
        return lambda x: _softplus32(x)
    return lambda x: x if x > 20.0 else math.log1p(math.exp(x))


def _sigmoid(x):  # pragma: no cover - overloaded
    return 1.0 / (1.0 + math.exp(-x))


@overload(_sigmoid, inline="always")
def _sigmoid_overload(x):
    if x == types.float32:
        return lambda x: _ONE / (_ONE + _fexp32(-x))
    return lambda x: 1.0 / (1.0 + math.exp(-x))




@njit(inline="always", fastmath=True)
def _fill_dt(dt_buf, delta_row, bias_d, softplus, l0, steps):
    """dt_buf[t] = softplus?(delta[l0 + t] + bias_d) (vectorised over t)."""
    if softplus:
        for t in range(steps):
            dt_buf[t] = _softplus(delta_row[l0 + t] + bias_d)
    else:
        for t in range(steps):
            dt_buf[t] = delta_row[l0 + t] + bias_d


@njit(inline="always", fastmath=True)
def _fill_exp(buf, dt_buf, a_row, steps):
    """buf[t, n] = exp(dt_buf[t] * A[n]) (SIMD over n)."""
    for t in range(steps):
        dtl = dt_buf[t]
        for n in range(a_row.shape[0]):
            buf[t, n] = _exp(dtl * a_row[n])


@njit(inline="always", fastmath=True)
def _recur(u_row, Bg, Cg, l0, steps, dt_buf, buf, xs, y_buf):
    """xs[t + 1] = exp(dt A) * xs[t] + dt u B (xs[0] = incoming state); y_buf[t] = C . xs[t + 1]."""
    n_state = xs.shape[1]
    for t in range(steps):
        dtu = dt_buf[t] * u_row[l0 + t]
        acc = xs.dtype.type(0.0)
        for n in range(n_state):
            xn = buf[t, n] * xs[t, n] + dtu * Bg[l0 + t, n]
            xs[t + 1, n] = xn
            acc += xn * Cg[l0 + t, n]
        y_buf[t] = acc


@njit(parallel=True, fastmath=True, cache=CACHE)
def scan_forward(u, delta, A, Bm, Cm, Dv, z, bias, flags, out, last, ckpt, chunk):
    """Fused forward: dt = softplus?(delta + bias); scan; out = (y + D u) * silu(z).

    u, delta, z, out: (Bt, D, L); A: (D, N); Bm, Cm: (Bt, G, L, N); Dv, bias: (D,) (ignored when
    flags says absent; z may be (0, 0, 0)); flags = (has_D, has_z, has_bias, softplus);
    last: (Bt, D, N); ckpt: (Bt, D, n_chunks, N) = state before each chunk.
    """
    bt, dim, length = u.shape
    n_state = A.shape[1]
    per_group = dim // Bm.shape[1]
    n_chunks = ckpt.shape[2]
    for row in prange(bt * dim):
        b = row // dim
        d = row - b * dim
        g = d // per_group
        zero = u.dtype.type(0.0)
        dd = Dv[d] if flags[0] else zero
        bias_d = bias[d] if flags[2] else zero
        xs = np.zeros((chunk + 1, n_state), dtype=u.dtype)
        buf = np.empty((chunk, n_state), dtype=u.dtype)
        dt_buf = np.empty(chunk, dtype=u.dtype)
        y_buf = np.empty(chunk, dtype=u.dtype)
        for c in range(n_chunks):
            l0 = c * chunk
            steps = min(chunk, length - l0)
            if c > 0:
                xs[0, :] = xs[chunk, :]
            ckpt[b, d, c, :] = xs[0, :]
            _fill_dt(dt_buf, delta[b, d], bias_d, flags[3], l0, steps)
            _fill_exp(buf, dt_buf, A[d], steps)
            _recur(u[b, d], Bm[b, g], Cm[b, g], l0, steps, dt_buf, buf, xs, y_buf)
            if flags[1]:
                for t in range(steps):
                    zl = z[b, d, l0 + t]
                    out[b, d, l0 + t] = (y_buf[t] + dd * u[b, d, l0 + t]) * zl * _sigmoid(zl)
            else:
                for t in range(steps):
                    out[b, d, l0 + t] = y_buf[t] + dd * u[b, d, l0 + t]
        last[b, d, :] = xs[length - (n_chunks - 1) * chunk, :]


@njit(inline="always", fastmath=True)
def _gate_grads(b, d, l0, steps, u, delta, z, dout, dz, dd, bias_d, flags, y_buf, g_buf, sp_buf):
    """Vectorised over the chunk: dz, g_buf = dL/dy (through the z gate), sp_buf = softplus'(delta + bias)."""
    one = u.dtype.type(1.0)
    if flags[1]:
        for t in range(steps):
            zl = z[b, d, l0 + t]
            sg = _sigmoid(zl)
            go = dout[b, d, l0 + t]
            dz[b, d, l0 + t] = go * (y_buf[t] + dd * u[b, d, l0 + t]) * sg * (one + zl * (one - sg))
            g_buf[t] = go * zl * sg
    else:
        for t in range(steps):
            g_buf[t] = dout[b, d, l0 + t]
    if flags[3]:
        for t in range(steps):
            sp_buf[t] = _sigmoid(delta[b, d, l0 + t] + bias_d)
    else:
        for t in range(steps):
            sp_buf[t] = one


@njit(inline="always", fastmath=True)
def _reverse(b, d, g, p, l0, steps, u, A, Bm, Cm, bufs, grads):
    """Adjoint recurrence over one chunk, reverse time: h_l = g_l C_l + exp(dt_{l+1} A) h_{l+1}.

    Works on 2-D row views with dA accumulated locally (dA_acc), so the inner loop over the N states indexes
    unit-stride rows only."""
    du, ddelta, dz, dA, dBp, dCp, dD, dbias = grads
    xs, buf, dt_buf, y_buf, g_buf, sp_buf, carry, dA_acc = bufs
    n_state = A.shape[1]
    a_row = A[d]
    b_rows, c_rows = Bm[b, g], Cm[b, g]
    db_rows, dc_rows = dBp[b, g, p], dCp[b, g, p]
    u_row, du_row, ddelta_row = u[b, d], du[b, d], ddelta[b, d]
    s_bias = u.dtype.type(0.0)
    s_d = u.dtype.type(0.0)
    for t in range(steps - 1, -1, -1):
        l = l0 + t
        dtl = dt_buf[t]
        ul = u_row[l]
        gy = g_buf[t]
        dtu = dtl * ul
        s_du = u.dtype.type(0.0)
        s_da = u.dtype.type(0.0)
        x_prev, x_next, e_t = xs[t], xs[t + 1], buf[t]
        b_l, c_l, db_l, dc_l = b_rows[l], c_rows[l], db_rows[l], dc_rows[l]
        for n in range(n_state):
            h = gy * c_l[n] + carry[n]
            dc_l[n] += gy * x_next[n]
            db_l[n] += h * dtu
            s_du += h * b_l[n]
            hxa = h * x_prev[n] * e_t[n]
            s_da += hxa * a_row[n]
            dA_acc[n] += hxa * dtl
            carry[n] = h * e_t[n]
        du_row[l] = s_du * dtl
        s_ddt = (s_du * ul + s_da) * sp_buf[t]
        ddelta_row[l] = s_ddt
        s_bias += s_ddt
        s_d += gy * ul
    return s_bias, s_d


@njit(inline="always", fastmath=True)
def _backward_row(b, d, g, p, u, delta, A, Bm, Cm, Dv, z, bias, flags, ckpt, dout, grads, bufs, chunk):
    """Backward of one row: per chunk (last first) recompute exp, states and y, then the adjoint pass."""
    du, ddelta, dz = grads[0], grads[1], grads[2]
    xs, buf, dt_buf, y_buf, g_buf, sp_buf, carry, dA_acc = bufs
    length = u.shape[2]
    zero = u.dtype.type(0.0)
    dd = Dv[d] if flags[0] else zero
    bias_d = bias[d] if flags[2] else zero
    carry[:] = 0.0
    dA_acc[:] = 0.0
    row_bias = zero
    row_d = zero
    for c in range(ckpt.shape[2] - 1, -1, -1):
        l0 = c * chunk
        steps = min(chunk, length - l0)
        _fill_dt(dt_buf, delta[b, d], bias_d, flags[3], l0, steps)
        _fill_exp(buf, dt_buf, A[d], steps)
        xs[0, :] = ckpt[b, d, c, :]
        _recur(u[b, d], Bm[b, g], Cm[b, g], l0, steps, dt_buf, buf, xs, y_buf)
        _gate_grads(b, d, l0, steps, u, delta, z, dout, dz, dd, bias_d, flags, y_buf, g_buf, sp_buf)
        s_bias, s_d = _reverse(b, d, g, p, l0, steps, u, A, Bm, Cm, bufs, grads)
        row_bias += s_bias
        row_d += s_d
        if flags[0]:
            for t in range(steps):
                du[b, d, l0 + t] += g_buf[t] * dd
    dA_row = grads[3][b, d]
    for n in range(dA_row.shape[0]):
        dA_row[n] += dA_acc[n]
    grads[6][b, d] += row_d
    grads[7][b, d] += row_bias


@njit(parallel=True, fastmath=True, cache=CACHE)
def scan_backward(u, delta, A, Bm, Cm, Dv, z, bias, flags, ckpt, dout, du, ddelta, dz, dA, dBp, dCp, dD, dbias,
                  chunk):
    """Gradients of :func:`scan_forward`. dA: per batch (Bt, D, N); dD, dbias: (Bt, D); dBp, dCp:
    (Bt, G, P, L, N) partial sums over P disjoint slices of each group's rows, so parallel tasks never
    write the same element. dA, dD, dbias, dBp, dCp must be zero-initialised."""
    bt, dim, _ = u.shape
    groups = Bm.shape[1]
    parts = dBp.shape[2]
    per_group = dim // groups
    n_state = A.shape[1]
    grads = (du, ddelta, dz, dA, dBp, dCp, dD, dbias)
    for task in prange(bt * groups * parts):
        b = task // (groups * parts)
        g = (task // parts) % groups
        p = task % parts
        dt = u.dtype
        bufs = (np.empty((chunk + 1, n_state), dt), np.empty((chunk, n_state), dt), np.empty(chunk, dt),
                np.empty(chunk, dt), np.empty(chunk, dt), np.empty(chunk, dt), np.empty(n_state, dt),
                np.empty(n_state, dt))
        lo = g * per_group + (p * per_group) // parts
        hi = g * per_group + ((p + 1) * per_group) // parts
        for d in range(lo, hi):
            _backward_row(b, d, g, p, u, delta, A, Bm, Cm, Dv, z, bias, flags, ckpt, dout, grads, bufs, chunk)


def num_threads() -> int:
    return numba.get_num_threads()
