"""MambaBlock / MambaLayer against mamba-ssm's released ``mamba_inner_ref`` (its whole Mamba mixer: in-proj
output -> causal conv1d + SiLU -> x/dt projections -> selective scan with z gate -> out-proj), with upstream's own
``causal_conv1d_ref`` and ``selective_scan_ref`` bound in place of the kernels. Forward and every gradient, so a
layout change in the block (channel-major projections, numba conv1d, LayerNorm before reordering) cannot change
the maths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnunet_plugins.networks.mamba_block import MambaBlock, MambaLayer
from upstream_refs import load  # tests/ is on sys.path under pytest


@pytest.fixture(scope="module")
def upstream():
    conv, scan = load()
    return conv, scan


def _ref_block(blk: MambaBlock, h: torch.Tensor, upstream, monkeypatch) -> torch.Tensor:
    """(B, L, d_model) -> (B, L, d_model) by mamba-ssm's mamba_inner_ref (the in-proj is a plain linear there)."""
    conv, scan = upstream
    monkeypatch.setattr(scan, "causal_conv1d_fn", conv.causal_conv1d_ref, raising=False)
    monkeypatch.setattr(scan, "selective_scan_fn", scan.selective_scan_ref)
    xz = F.linear(h, blk.in_proj.weight).transpose(1, 2)  # (B, 2 d_inner, L)
    return scan.mamba_inner_ref(xz, blk.conv1d.weight, blk.conv1d.bias, blk.x_proj.weight, blk.dt_proj.weight,
                                blk.out_proj.weight, None, -torch.exp(blk.A_log.float()), D=blk.D.float(),
                                delta_bias=blk.dt_proj.bias.float(), delta_softplus=True)


def _grads(module, inp, fn):
    module.zero_grad()
    x = inp.clone().requires_grad_()
    y = fn(x)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y.detach(), x.grad, {k: p.grad.clone() for k, p in module.named_parameters()}


def _close(a, b, tol=2e-4):
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def test_mamba_block_matches_mamba_inner_ref(upstream, monkeypatch):
    torch.manual_seed(0)
    blk = MambaBlock(16)
    h = torch.randn(2, 150, 16)  # 150 steps: three scan chunks, the last partial
    monkeypatch.setenv("HNC_SCAN_BACKEND", "portable")
    ours = _grads(blk, h, blk)
    ref = _grads(blk, h, lambda t: _ref_block(blk, t, upstream, monkeypatch))
    assert _close(ours[0], ref[0]) and _close(ours[1], ref[1])
    assert ours[2].keys() == ref[2].keys()
    for k in ref[2]:
        assert _close(ours[2][k], ref[2][k]), k


def test_mamba_layer_is_the_three_order_definition(upstream, monkeypatch):
    """x + mean over (row-major, reversed, inter-slice) of unscan(Mamba(LayerNorm(scan(x)))), with the orders
    built here from explicit index permutations and the block from upstream's reference."""
    torch.manual_seed(1)
    layer = MambaLayer(8)
    x = torch.randn(2, 8, 3, 4, 5)
    b, c, *s = x.shape
    length = s[0] * s[1] * s[2]
    idx = torch.arange(length).view(*s)
    orders = [idx.flatten(), idx.flatten().flip(0), idx.permute(2, 1, 0).flatten()]

    def definition(xi):
        tokens = xi.flatten(2).transpose(1, 2)  # (B, L, C), row-major
        acc = torch.zeros_like(tokens)
        for order in orders:
            y = _ref_block(layer.mamba, layer.norm(tokens[:, order]), upstream, monkeypatch)
            acc = acc + y[:, torch.argsort(order)]
        return xi + (acc / 3).transpose(1, 2).reshape(xi.shape)

    monkeypatch.setenv("HNC_SCAN_BACKEND", "portable")
    ours = _grads(layer, x, layer)
    ref = _grads(layer, x, definition)
    assert _close(ours[0], ref[0]) and _close(ours[1], ref[1])
    for k in ref[2]:
        assert _close(ours[2][k], ref[2][k]), k
