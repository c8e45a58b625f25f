"""DM networks: image encoders (MONAI swinViT or 3D ResNet) and the fusion classifier.

Input image ``(B, C, S, S, S)`` with C = CT + tumour mask + peritumoral mask (+ organs), S a multiple
of 32; radiomics ``(B, n_radiomics)`` (selected, standardised); clinical ``(B, n_clinical)``.
Output: DM logit ``(B,)``; ``torch.sigmoid`` gives the probability.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class SwinEncoder(nn.Module):
    """swinViT of SwinUNETR (``monai.networks.nets.swin_unetr.SwinTransformer``), deepest stage pooled.

    Output ``(B, 16 * feature_size)``.
    """

    def __init__(self, in_channels: int = 3, feature_size: int = 12, depths: Sequence[int] = (2, 2, 2, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7, dropout_path_rate: float = 0.0):
        super().__init__()
        from monai.networks.nets.swin_unetr import SwinTransformer

        self.swin = SwinTransformer(in_chans=in_channels, embed_dim=feature_size, window_size=(window_size,) * 3,
                                    patch_size=(2, 2, 2), depths=depths, num_heads=num_heads,
                                    drop_path_rate=dropout_path_rate, spatial_dims=3)
        self.out_dim = feature_size * 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deepest = self.swin(x, normalize=True)[-1]  # (B, 16*fs, S/32, S/32, S/32)
        return deepest.mean(dim=(2, 3, 4))


class ResNetEncoder(nn.Module):
    """MONAI 3D ResNet-10 style encoder (basic blocks), global-average pooled: ``(B, block_inplanes[-1])``."""

    def __init__(self, in_channels: int = 3, block_inplanes: Sequence[int] = (16, 32, 64, 128)):
        super().__init__()
        from monai.networks.nets.resnet import ResNet

        self.net = ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=list(block_inplanes), spatial_dims=3,
                          n_input_channels=in_channels, feed_forward=False)
        self.out_dim = int(block_inplanes[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DMFusionNet(nn.Module):
    """Deep (image) + radiomics + clinical fusion -> DM logit.

    ``encode(image)`` gives the deep embedding ``(B, deep_dim)``; ``forward`` concatenates the enabled
    modalities and applies a small MLP. A modality with size 0 / ``use_*=False`` is left out.
    """

    def __init__(self, in_channels: int = 3, n_radiomics: int = 36, n_clinical: int = 0, backbone: str = "swin",
                 feature_size: int = 12, deep_dim: int = 8, hidden: int = 16, dropout: float = 0.3,
                 use_image: bool = True, use_radiomics: bool = True, use_clinical: bool = True,
                 window_size: int = 7):
        super().__init__()
        self.use_image = use_image
        self.use_radiomics = use_radiomics and n_radiomics > 0
        self.use_clinical = use_clinical and n_clinical > 0
        if not (self.use_image or self.use_radiomics or self.use_clinical):
            raise ValueError("DMFusionNet needs at least one modality")
        if use_image:
            if backbone == "swin":
                self.encoder = SwinEncoder(in_channels, feature_size, window_size=window_size)
            elif backbone == "resnet":
                self.encoder = ResNetEncoder(in_channels)
            else:
                raise ValueError(f"backbone must be 'swin' or 'resnet', got {backbone!r}")
            self.project = nn.Sequential(nn.LayerNorm(self.encoder.out_dim), nn.Linear(self.encoder.out_dim, deep_dim),
                                         nn.Tanh())
            self.deep_head = nn.Linear(deep_dim, 1)  # auxiliary head used when the image branch is trained alone
        width = (deep_dim if use_image else 0) + (n_radiomics if self.use_radiomics else 0) + \
            (n_clinical if self.use_clinical else 0)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Deep embedding ``(B, deep_dim)``."""
        return self.project(self.encoder(image))

    def deep_logit(self, image: torch.Tensor) -> torch.Tensor:
        """Image-only logit ``(B,)`` of the auxiliary head."""
        return self.deep_head(self.encode(image)).squeeze(-1)

    def fuse(self, deep: torch.Tensor | None, radiomics: torch.Tensor | None, clinical: torch.Tensor | None):
        """Head on precomputed parts: logit ``(B,)``."""
        parts = []
        if self.use_image:
            parts.append(deep)
        if self.use_radiomics:
            parts.append(radiomics)
        if self.use_clinical:
            parts.append(clinical)
        return self.head(torch.cat(parts, dim=1)).squeeze(-1)

    def forward(self, image: torch.Tensor | None = None, radiomics: torch.Tensor | None = None,
                clinical: torch.Tensor | None = None) -> torch.Tensor:
        deep = self.encode(image) if self.use_image else None
        return self.fuse(deep, radiomics, clinical)
