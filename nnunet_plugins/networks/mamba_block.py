"""Mamba (S6) block with mamba-ssm's parameter names, and a multi-directional Mamba layer for N-d maps.

Parameter names equal ``mamba_ssm.modules.mamba_simple.Mamba`` (in_proj, conv1d, x_proj, dt_proj, A_log,
D, out_proj), so a checkpoint trained with the CUDA kernels loads on CPU and vice versa; the ops pick
the backend at run time (:mod:`nnunet_plugins.ops.backend`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnunet_plugins.ops import causal_conv1d_fn, selective_scan_fn


def _proj(weight: Tensor, x: Tensor) -> Tensor:
    """weight (out, in) @ x (B, in, L) -> (B, out, L), contiguous (``torch.matmul`` would fold B into L and
    return a transposed view, which the kernels then copy)."""
    return torch.bmm(weight.expand(x.shape[0], *weight.shape), x)


class MambaBlock(nn.Module):
    """Selective SSM block: (B, L, d_model) -> (B, L, d_model).

    d_inner = expand * d_model, dt_rank = ceil(d_model / 16); initialisation as in the Mamba paper
    (S4D-real A, dt log-uniform in [dt_min, dt_max] through an inverse-softplus bias).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self._init_dt(dt_min, dt_max, dt_init_floor)

    def _init_dt(self, dt_min: float, dt_max: float, floor: float) -> None:
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.dt_proj.bias._no_reinit = True

    def forward(self, h: Tensor) -> Tensor:
        """(B, L, d_model) -> (B, L, d_model)."""
        return self.mix(h.transpose(1, 2)).transpose(1, 2)

    def mix(self, h: Tensor) -> Tensor:
        """(B, d_model, L) channel-major -> (B, d_model, L).

        Channel-major throughout, as mamba-ssm's fast path: every projection is one batched matmul whose
        output is already in the (B, channels, L) layout the conv1d and scan kernels read, so no (B, L, C) <->
        (B, C, L) transposes are copied (they cost ~13% of a layer's forward+backward).
        """
        xz = _proj(self.in_proj.weight, h)  # (B, 2 d_inner, L)
        x, z = xz.chunk(2, dim=1)
        x = causal_conv1d_fn(x, self.conv1d.weight.squeeze(1), bias=self.conv1d.bias, activation="silu")
        x_dbl = _proj(self.x_proj.weight, x)  # (B, dt_rank + 2N, L)
        dt, Bm, Cm = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=1)
        dt = _proj(self.dt_proj.weight, dt)  # (B, d_inner, L); bias goes to the scan
        A = -torch.exp(self.A_log.float())
        y = selective_scan_fn(x, dt, A, Bm, Cm, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
                              delta_softplus=True)
        return _proj(self.out_proj.weight, y)


def scan_orders(t: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """(B, L, C) tokens in row-major order of the grid ``spatial`` -> (3B, L, C): the same, reversed, and
    inter-slice order (spatial axes reversed, so voxels at one in-plane position across slices are adjacent).
    Only token rows move (each a contiguous C-vector)."""
    batch, _, c = t.shape
    k = len(spatial)
    inter = t.reshape(batch, *spatial, c).permute(0, *range(k, 0, -1), k + 1).reshape(t.shape)
    return torch.cat([t, t.flip(1), inter], dim=0)


def merge_orders(seq: Tensor, like: Tensor) -> Tensor:
    """Inverse of :func:`scan_orders` for channel-major outputs, averaging the three directions:
    (3B, C, L) -> like's shape (B, C, *S)."""
    fwd, rev, inter = seq.chunk(3, dim=0)
    shape = like.shape
    k = like.dim() - 2
    out = (fwd + rev.flip(-1)).reshape(shape)
    inter_map = inter.reshape(*shape[:2], *shape[2:][::-1]).permute(0, 1, *range(k + 1, 1, -1))
    return (out + inter_map) / 3.0


class MambaLayer(nn.Module):
    """x + mean_o unscan_o(Mamba(LayerNorm(scan_o(x)))) over three scan orders; one shared MambaBlock
    (the three orders run as one batch of 3B sequences), in float32 whatever the autocast state."""

    def __init__(self, channels: int, d_state: int = 16, d_conv: int = 4, expand: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.mamba = MambaBlock(channels, d_state=d_state, d_conv=d_conv, expand=expand)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, *S) -> same shape and dtype. Computes in float32 with autocast off (as U-Mamba does): under
        nnU-Net's fp16 AMP the projections and the scan would otherwise get fp16 inputs."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x32 = x.float()
            # LayerNorm acts per token, so it commutes with reordering the tokens: normalise once (B L tokens,
            # not 3 B L), then build the three orders; the block runs channel-major (B, C, L)
            tokens = self.norm(x32.flatten(2).transpose(1, 2))  # (B, L, C)
            seq = self.mamba.mix(scan_orders(tokens, tuple(x.shape[2:])).transpose(1, 2))  # (3B, C, L)
            out = x32 + merge_orders(seq, x32)
        return out.to(x.dtype)

    def feature_map_size(self, tokens: int) -> int:
        """Stored activations (elements per sample), same spirit as nnU-Net's conv estimate."""
        c, di = self.mamba.d_model, self.mamba.d_inner
        return int(3 * tokens * (2 * c + 5 * di + self.mamba.x_proj.out_features))
