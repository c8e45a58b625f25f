"""``HecMambaTrainer_5epochs``: HecMambaTrainer for 5 epochs (quick experiments)."""

from __future__ import annotations

import torch

from nnunet_plugins.trainers.HecMambaTrainer import HecMambaTrainer


class HecMambaTrainer_5epochs(HecMambaTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 5

