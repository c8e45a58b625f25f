"""``HecMambaTrainerNoMamba``: the ablation, same network and recipe without Mamba layers."""

from __future__ import annotations


from nnunet_plugins.networks.hecmamba import HecMambaNoMamba
from nnunet_plugins.trainers.build import make_builder
from nnunet_plugins.trainers.HecMambaTrainer import HecMambaTrainer


class HecMambaTrainerNoMamba(HecMambaTrainer):
    build_network_architecture = staticmethod(make_builder(HecMambaNoMamba))
