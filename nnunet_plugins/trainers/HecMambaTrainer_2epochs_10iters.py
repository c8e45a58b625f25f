"""``HecMambaTrainer_2epochs_10iters``: the CPU trainer (:mod:`HecMambaTrainer_cpu`: lr 3e-3, no mirroring at
inference) for CI: 2 epochs of 10 training and 2 validation iterations."""

from __future__ import annotations

import torch

from nnunet_plugins.trainers.HecMambaTrainer_cpu import HecMambaTrainer_cpu


class HecMambaTrainer_2epochs_10iters(HecMambaTrainer_cpu):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 10
        self.num_val_iterations_per_epoch = 2
