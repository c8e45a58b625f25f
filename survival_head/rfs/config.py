"""The RFS model's defaults in one place: the CLI, the bundle configs and the main job read them.

``RFSConfig()`` holds the paper-sized defaults that ``bundles/hecktor_rfs_fusion/configs/*.json`` repeat
(``tests/test_rfs_bundle.py`` checks they match); :data:`CPU_BUDGET` is the main job's CPU-sized variant
(32³ crops, frozen ResNet-18 features, a larger learning rate for the MLP heads only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class RFSConfig:
    """Training and data settings of the RFS fusion model (crop side in voxels, lr of AdamW)."""

    image_size: int = 96           # crop side S of the (2, S, S, S) CT+PET input
    max_epochs: int = 30
    batch_size: int = 8
    n_folds: int = 5
    lr: float = 3e-4
    weight_decay: float = 1e-4
    dropout: float = 0.3
    seed: int = 0
    freeze_backbone: bool = False  # True: train the MLPs on cached ResNet-18 features only
    clinical_set: str = "paper+hpv"
    pretrain_clinical: bool = False
    inner_val_fraction: float = 0.2
    modality_dropout: float = 0.0
    n_boot: int = 1000             # bootstrap resamples of the confidence intervals

    def replace(self, **overrides) -> "RFSConfig":
        """A copy with ``overrides`` (``None`` values ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


DEFAULTS = RFSConfig()
CPU_BUDGET = DEFAULTS.replace(image_size=32, max_epochs=20, lr=1e-3, freeze_backbone=True, n_boot=500)
