"""``HecMambaTrainerNoMamba``: the ablation, same network and recipe without Mamba layers."""

from __future__ import annotations

from torch import nn

from nnunet_plugins.networks.hecmamba import HecMambaNoMamba
from nnunet_plugins.trainers.build import NEW, build_from_plans_args
from nnunet_plugins.trainers.HecMambaTrainer import HecMambaTrainer


class HecMambaTrainerNoMamba(HecMambaTrainer):
    @staticmethod
    def build_network_architecture(*args, **kwargs) -> nn.Module:
        return build_from_plans_args(HecMambaNoMamba, *args, **kwargs)

    build_network_architecture.__signature__ = NEW
