"""``HecMambaTrainer_cpu``: HecMamba on a CPU budget (use with the plans of :mod:`nnunet_plugins.cpu_plans`):
15 epochs x 20 iterations, 2 validation iterations (AdamW lr 1e-3 as HecMambaTrainer;
3e-3 collapsed to background in one of three runs); no mirroring at inference (final validation
and ``nnUNetv2_predict`` run 1 instead of 8 passes per tile). ~0.3-1.3 s per iteration at the default
CPU plans on 2 cores (idle to shared), i.e. ~2-5 min of training.

Training is seeded (``random``, NumPy, torch; ``seed`` = 0) when it starts, so the demo repeats: at
300 iterations the unseeded runs ended anywhere between GTVp DSC 0.24 and 0.80. Augmentation is covered
by the seed when it runs in the main process (``nnUNet_n_proc_DA=0``, as the main job sets it on CPU)."""

from __future__ import annotations

import random

import numpy as np
import torch

from nnunet_plugins.trainers.HecMambaTrainer import HecMambaTrainer


class HecMambaTrainer_cpu(HecMambaTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 15
        self.num_iterations_per_epoch = 20
        self.num_val_iterations_per_epoch = 2
        self.seed = 0

    def on_train_start(self):
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        super().on_train_start()

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        out = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None  # training keeps mirroring augmentation
        return out
