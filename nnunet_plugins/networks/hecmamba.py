"""HecMamba: residual conv encoder with multi-directional Mamba layers after the deeper stages,
nnU-Net's UNet decoder with deep supervision. Builds from nnU-Net plans for any patch size."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import Tensor, nn

from nnunet_plugins.networks.mamba_block import MambaLayer

_ENCODER_ATTRS = ("output_channels", "strides", "conv_op", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op",
                  "dropout_op_kwargs", "nonlin", "nonlin_kwargs", "kernel_sizes")


def stage_sizes(patch_size: Sequence[int], strides: Sequence) -> list[list[int]]:
    """Feature-map size after each encoder stage."""
    sizes, cur = [], list(patch_size)
    for s in strides:
        s = [s] * len(cur) if isinstance(s, int) else list(s)
        cur = [c // k for c, k in zip(cur, s)]
        sizes.append(cur)
    return sizes


def mamba_stages(patch_size: Sequence[int] | None, strides: Sequence, min_stage: int = 2,
                 max_tokens: int | None = None) -> list[int]:
    """Stages that get a Mamba layer: every stage index >= min_stage (default 2: 1/4 resolution and
    coarser). ``max_tokens`` (needs ``patch_size``) additionally drops stages with more voxels than that.
    The default does not depend on the patch size, so both build signatures give the same network."""
    stages = [s for s in range(len(strides)) if s >= min_stage]
    if max_tokens is None or patch_size is None:
        return stages
    sizes = stage_sizes(patch_size, strides)
    return [s for s in stages if int(np.prod(sizes[s])) <= max_tokens]


class MambaEncoder(nn.Module):
    """ResidualEncoder whose stage outputs pass through a MambaLayer where ``use[s]``; returns all skips."""

    def __init__(self, encoder: ResidualEncoder, use: Sequence[bool], d_state: int = 16, expand: int = 2):
        super().__init__()
        self.encoder = encoder
        self.mamba_layers = nn.ModuleList(
            MambaLayer(c, d_state=d_state, expand=expand) if u else nn.Identity()
            for c, u in zip(encoder.output_channels, use))
        for attr in _ENCODER_ATTRS:
            setattr(self, attr, getattr(encoder, attr))

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.encoder.stem is not None:
            x = self.encoder.stem(x)
        skips = []
        for stage, mamba in zip(self.encoder.stages, self.mamba_layers):
            x = mamba(stage(x))
            skips.append(x)
        return skips

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        out = self.encoder.compute_conv_feature_map_size(input_size)
        for layer, size in zip(self.mamba_layers, stage_sizes(input_size, self.strides)):
            if isinstance(layer, MambaLayer):
                out += np.int64(layer.feature_map_size(int(np.prod(size))))
        return out


class HecMamba(nn.Module):
    """U-shaped PET/CT segmentation net. Input (B, C_in, *patch); output logits (B, n_classes, *patch),
    or with ``decoder.deep_supervision`` a list from full resolution down (nnU-Net's convention).
    No final nonlinearity."""

    use_mamba = True

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: Sequence[int], conv_op: type,
                 kernel_sizes: Sequence, strides: Sequence, num_classes: int,
                 n_blocks_per_stage: int | Sequence[int] = 1, n_conv_per_stage_decoder: int | Sequence[int] = 1,
                 conv_bias: bool = True, norm_op: type | None = None, norm_op_kwargs: dict | None = None,
                 dropout_op: type | None = None, dropout_op_kwargs: dict | None = None, nonlin: type | None = None,
                 nonlin_kwargs: dict | None = None, deep_supervision: bool = True,
                 patch_size: Sequence[int] | None = None, mamba_min_stage: int = 2, mamba_max_tokens: int | None = None,
                 d_state: int = 16, expand: int = 2):
        super().__init__()
        res = ResidualEncoder(input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                              n_blocks_per_stage, conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs,
                              nonlin, nonlin_kwargs, return_skips=True)
        chosen = set(mamba_stages(patch_size, strides, mamba_min_stage, mamba_max_tokens)) if self.use_mamba else set()
        self.mamba_stage_ids = sorted(chosen)
        self.encoder = MambaEncoder(res, [s in chosen for s in range(n_stages)], d_state=d_state, expand=expand)
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision)

    def forward(self, x: Tensor):
        return self.decoder(self.encoder(x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        assert len(input_size) == len(self.encoder.strides[0]) if not isinstance(self.encoder.strides[0], int) \
            else True, "input_size must be the spatial patch size"
        return self.encoder.compute_conv_feature_map_size(input_size) + \
            self.decoder.compute_conv_feature_map_size(input_size)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He init for convolutions (nnU-Net's), leaving Mamba's own initialisation alone."""
        InitWeights_He(1e-2)(module)


class HecMambaNoMamba(HecMamba):
    """Ablation: the same encoder/decoder without any Mamba layer."""

    use_mamba = False


def hecmamba_kwargs_from_plans(arch_kwargs: dict, patch_size: Sequence[int] | None) -> dict:
    """Map nnU-Net plans' architecture kwargs (PlainConvUNet or ResidualEncoderUNet style, classes already
    imported) to :class:`HecMamba` kwargs. One residual block per stage unless the plans give
    ``n_blocks_per_stage``; one conv per decoder stage unless they give ``n_conv_per_stage_decoder``."""
    keep = ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "conv_bias", "norm_op",
            "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs",
            "n_conv_per_stage_decoder", "n_blocks_per_stage", "mamba_min_stage", "mamba_max_tokens", "d_state",
            "expand")
    kw = {k: v for k, v in arch_kwargs.items() if k in keep}
    kw.setdefault("n_blocks_per_stage", 1)
    kw.setdefault("n_conv_per_stage_decoder", 1)
    kw["patch_size"] = None if patch_size is None else [int(p) for p in patch_size]
    return kw


