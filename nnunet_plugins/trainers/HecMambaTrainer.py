"""``HecMambaTrainer``: nnU-Net v2 trainer for HecMamba (AdamW, warm-up + poly decay, Dice+CE)."""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunet_plugins.networks.hecmamba import HecMamba
from nnunet_plugins.trainers.build import make_builder
from nnunet_plugins.trainers.schedule import WarmupPolyLR, param_groups


class HecMambaTrainer(nnUNetTrainer):
    """HecMamba with nnU-Net's data pipeline, Dice+CE deep-supervision loss and gradient clipping
    (norm 12, in ``train_step``); AdamW (lr 1e-3, wd 0.01 except A_log, D, norms, biases) with linear
    warm-up over ``warmup_epochs`` then poly(0.9) decay. Runs on ``-device cpu`` and cuda."""

    network_class: type[nn.Module] = HecMamba

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3
        self.weight_decay = 1e-2
        self.warmup_epochs = 10

    build_network_architecture = staticmethod(make_builder(HecMamba))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(param_groups(self.network, self.weight_decay), lr=self.initial_lr,
                                      betas=(0.9, 0.999), eps=1e-8)
        warmup = min(self.warmup_epochs, max(self.num_epochs // 10, 0))
        scheduler = WarmupPolyLR(optimizer, self.initial_lr, self.num_epochs, warmup)
        self.print_to_log_file(f"HecMamba: AdamW lr {self.initial_lr}, wd {self.weight_decay}, warm-up {warmup} "
                               f"epochs, poly decay")
        return optimizer, scheduler

    def log_backend(self, when: str) -> None:
        """Write the resolved scan/conv1d backend for this trainer's device to nnU-Net's log file."""
        from nnunet_plugins.ops.backend import describe

        self.print_to_log_file(f"{when}: {describe(self.device)}")

    def on_train_start(self):
        super().on_train_start()
        self.log_backend("training start")

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.log_backend("validation (prediction) start")
        return super().perform_actual_validation(save_probabilities)
