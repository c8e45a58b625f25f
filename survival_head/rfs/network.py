"""FusedFeatureExtractor: 3D ResNet-18 on PET/CT + clinical MLP -> 128-d fused features -> Cox risk."""

from __future__ import annotations

import torch
from monai.networks.nets import resnet18
from torch import nn

MODES = ("fusion", "image", "clinical")


class FusedFeatureExtractor(nn.Module):
    """Image + clinical fusion network of the HECKTOR 2025 RFS model.

    Parameters
    ----------
    n_clinical : length F of the encoded clinical vector.
    in_channels : image channels (CT, PET) = 2.
    clinical_dim, fused_dim : widths of the clinical embedding (32) and the fused features (128).
    dropout : dropout in the clinical and fusion MLPs.
    modality_dropout : probability, per training sample, of blanking one whole branch (image or clinical,
        never both) before the fusion MLP, so the fused features cannot lean on the wide image branch
        alone (ModDrop, Neverova et al. 2016). Inactive in eval mode.
    mode : ``"fusion"`` (both inputs), ``"image"`` (clinical branch zeroed) or ``"clinical"``
        (image branch skipped) - the three rows of the paper's ablation table.

    ``forward(image (B, 2, S, S, S), clinical (B, F)) -> risk (B, 1)`` (log-hazard, higher = earlier
    relapse); ``features(image, clinical) -> (B, 128)`` feeds the downstream survival model.
    Both are TorchScript-scriptable.

    Buffers ``image_mean``/``image_scale`` (512,) standardise the backbone output before fusion
    (identity by default). With a frozen backbone they are set from the fold's training patients
    (:meth:`set_image_standardisation`), so the fusion MLP sees unit-scale image features.
    """

    def __init__(self, n_clinical: int, in_channels: int = 2, clinical_dim: int = 32, fused_dim: int = 128,
                 dropout: float = 0.3, mode: str = "fusion", modality_dropout: float = 0.0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.modality_dropout = float(modality_dropout)
        self.use_image = mode != "clinical"
        self.use_clinical = mode != "image"
        self.image_dim = 512
        self.backbone = resnet18(spatial_dims=3, n_input_channels=in_channels, feed_forward=False)
        self.clinical_mlp = nn.Sequential(
            nn.Linear(max(n_clinical, 1), clinical_dim), nn.ReLU(), nn.BatchNorm1d(clinical_dim), nn.Dropout(dropout),
        )
        self.fusion = nn.Sequential(
            nn.Linear(self.image_dim + clinical_dim, 256), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(256, fused_dim), nn.ReLU(),
        )
        self.risk_head = nn.Linear(fused_dim, 1)
        self.register_buffer("image_mean", torch.zeros(self.image_dim))
        self.register_buffer("image_scale", torch.ones(self.image_dim))

    def set_image_standardisation(self, image_features: torch.Tensor) -> None:
        """Set ``image_mean``/``image_scale`` from backbone outputs (n, 512) of training patients."""
        f = image_features.detach().float()
        sd = f.std(0, unbiased=False)
        self.image_mean.copy_(f.mean(0))
        self.image_scale.copy_(torch.where(sd > 1e-6, sd, torch.ones_like(sd)))

    @torch.jit.export
    def features(self, image: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """(B, 2, S, S, S), (B, F) -> fused features (B, 128)."""
        b = image.shape[0]
        if self.use_image:
            img = self.backbone(image)
        else:
            img = torch.zeros(b, self.image_dim, dtype=image.dtype, device=image.device)
        return self.fuse(img, clinical)

    @torch.jit.export
    def fuse(self, image_features: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """Backbone output (B, 512) + clinical (B, F) -> fused features (B, 128)."""
        cli = self.clinical_mlp(clinical)
        if not self.use_clinical:
            cli = torch.zeros_like(cli)
        img = (image_features - self.image_mean) / self.image_scale
        if not self.use_image:
            img = torch.zeros_like(img)
        if self.training and self.modality_dropout > 0.0 and self.use_image and self.use_clinical:
            u = torch.rand(img.shape[0], 1, device=img.device)
            img = img * (u >= self.modality_dropout / 2).to(img.dtype)  # blank the image branch
            cli = cli * (u < 1.0 - self.modality_dropout / 2).to(cli.dtype)  # or the clinical one
        return self.fusion(torch.cat([img, cli], dim=1))

    def forward(self, image: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """(B, 2, S, S, S), (B, F) -> Cox risk (B, 1)."""
        return self.risk_head(self.features(image, clinical))


class HeadOnly(nn.Module):
    """Risk from cached backbone features: ``forward(image_features (B, 512), clinical) -> (B, 1)``.

    Used when the backbone is frozen (CPU experiments): the CNN runs once per patient.
    """

    def __init__(self, net: FusedFeatureExtractor):
        super().__init__()
        self.net = net

    def features(self, image_features: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        return self.net.fuse(image_features, clinical)

    def forward(self, image_features: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        return self.net.risk_head(self.net.fuse(image_features, clinical))


def backbone_features(net: FusedFeatureExtractor, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(n, 2, S, S, S) -> (n, 512) backbone outputs in eval mode (zeros in clinical-only mode)."""
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            out.append(net.backbone(x) if net.use_image else torch.zeros(len(x), net.image_dim))
    return torch.cat(out) if out else torch.zeros(0, net.image_dim)
