"""Selective scan and causal conv1d: parity with the sequential reference, gradcheck, backend forcing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnunet_plugins.ops import (BackendUnavailableError, causal_conv1d_fn, causal_conv1d_ref, selective_scan_fn,
                                selective_scan_ref)

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _inputs(batch=2, dim=8, length=150, n=6, groups=None, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shp = (batch, n, length) if groups is None else (batch, groups, n, length)
    ts = [torch.randn(batch, dim, length, generator=g), torch.rand(batch, dim, length, generator=g) * 0.5,
          -torch.rand(dim, n, generator=g) * 2 - 0.1, torch.randn(*shp, generator=g), torch.randn(*shp, generator=g),
          torch.randn(dim, generator=g), torch.randn(batch, dim, length, generator=g), torch.rand(dim, generator=g) * 0.2]
    return [t.to(dtype).requires_grad_() for t in ts]


def _rel(a, b):
    return float((a - b).detach().abs().max() / b.abs().max().clamp_min(1e-30))


def _call(fn, ins, use_d=True, use_z=True, use_bias=True, softplus=True):
    return fn(*ins[:5], D=ins[5] if use_d else None, z=ins[6] if use_z else None,
              delta_bias=ins[7] if use_bias else None, delta_softplus=softplus, return_last_state=True)


@pytest.mark.parametrize("groups", [None, 1, 2])
@pytest.mark.parametrize("flags", [(True, True, True, True), (False, False, False, False), (True, False, True, False)])
def test_forward_backward_parity_fp32(groups, flags):
    ins = _inputs(groups=groups)
    w = torch.randn(2, 8, 150, generator=torch.Generator().manual_seed(1))
    res = []
    for fn in (selective_scan_fn, selective_scan_ref):
        out, last = _call(fn, ins, *flags)
        grads = torch.autograd.grad((out * w).sum(), ins, allow_unused=True)
        res.append((out, last, grads))
    (o1, l1, g1), (o2, l2, g2) = res
    assert _rel(o1, o2) < TOL[torch.float32] and _rel(l1, l2) < TOL[torch.float32]
    for a, b in zip(g1, g2):
        assert (a is None) == (b is None)
        if a is not None:
            assert _rel(a, b) < TOL[torch.float32]


def test_gradcheck_fp64():
    ins = _inputs(batch=1, dim=4, length=70, n=3, groups=2, dtype=torch.float64)
    f = lambda *a: selective_scan_fn(*a[:5], D=a[5], z=a[6], delta_bias=a[7], delta_softplus=True)  # noqa: E731
    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-7)


def test_fp64_parity_and_long_sequence_chunks():
    ins = _inputs(length=300, dtype=torch.float64)  # several chunks of the kernel
    o1, l1 = _call(selective_scan_fn, ins)
    o2, l2 = _call(selective_scan_ref, ins)
    assert _rel(o1, o2) < TOL[torch.float64] and _rel(l1, l2) < TOL[torch.float64]


def test_torch_fallback_matches_reference(monkeypatch):
    from nnunet_plugins.ops import backend

    monkeypatch.setattr(backend, "numba_available", lambda: False)
    ins = _inputs(length=40)
    o1, _ = _call(selective_scan_fn, ins)
    o2, _ = _call(selective_scan_ref, ins)
    assert _rel(o1, o2) < 1e-5


def test_half_inputs_return_input_dtype():
    ins = [t.detach().to(torch.bfloat16) for t in _inputs(length=20)]
    out = selective_scan_fn(*ins[:5], D=ins[5].float(), z=ins[6], delta_bias=ins[7].float(), delta_softplus=True)
    assert out.dtype == torch.bfloat16


def test_causal_conv1d_matches_conv1d():
    x, w, b = torch.randn(2, 6, 33), torch.randn(6, 4), torch.randn(6)
    ref = F.conv1d(x, w.unsqueeze(1), b, padding=3, groups=6)[..., :33]
    assert torch.allclose(causal_conv1d_ref(x, w, b), ref, atol=1e-6)
    assert torch.allclose(causal_conv1d_fn(x, w, b, "silu"), F.silu(ref), atol=1e-6)


@pytest.mark.parametrize("length, width, use_bias, act", [(33, 4, True, "silu"), (2, 4, True, "silu"),
                                                         (70, 3, False, None), (1, 1, True, "swish")])
def test_numba_causal_conv1d_forward_backward_match_reference(length, width, use_bias, act):
    """CPU path (numba kernels) against the F.conv1d reference: output and all three gradients, short sequences
    (L < W - 1) included."""
    from nnunet_plugins.ops.conv1d import CausalConv1dFn

    g = torch.Generator().manual_seed(length)
    x, w, b = torch.randn(3, 5, length, generator=g), torch.randn(5, width, generator=g), torch.randn(5, generator=g)
    grad = torch.randn(3, 5, length, generator=g)
    res = []
    for fn in (causal_conv1d_fn, causal_conv1d_ref):
        xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
        out = fn(xs, ws, bs if use_bias else None, act)
        (out * grad).sum().backward()
        res.append((out.detach(), xs.grad, ws.grad, bs.grad))
        if fn is causal_conv1d_fn:
            assert type(out.grad_fn).__name__ == "CausalConv1dFnBackward"  # the numba kernels ran
    for got, want in zip(res[0], res[1]):
        if want is None:
            assert got is None
        else:
            assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    xd = x.double().requires_grad_()
    wd = w.double().requires_grad_()
    bd = b.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, c, e: CausalConv1dFn.apply(a, c, e if use_bias else None, act is not None),
                                    (xd, wd, bd))


def test_backend_env_forcing(monkeypatch):
    ins = _inputs(length=30)
    monkeypatch.setenv("HNC_SCAN_BACKEND", "reference")
    o_ref, _ = _call(selective_scan_fn, ins)
    monkeypatch.setenv("HNC_SCAN_BACKEND", "portable")
    o_por, _ = _call(selective_scan_fn, ins)
    assert _rel(o_por, o_ref) < 1e-5
    monkeypatch.setenv("HNC_SCAN_BACKEND", "cuda")
    with pytest.raises(BackendUnavailableError, match=r"pip install \"hnc-petct\[cuda\]\""):
        _call(selective_scan_fn, ins)
    monkeypatch.setenv("HNC_SCAN_BACKEND", "fast")
    with pytest.raises(ValueError, match="not one of"):
        _call(selective_scan_fn, ins)
