"""HecMamba networks and the Mamba building blocks."""

from __future__ import annotations

from nnunet_plugins.networks.hecmamba import HecMamba, HecMambaNoMamba, hecmamba_kwargs_from_plans, mamba_stages
from nnunet_plugins.networks.mamba_block import MambaBlock, MambaLayer

__all__ = ["HecMamba", "HecMambaNoMamba", "MambaBlock", "MambaLayer", "hecmamba_kwargs_from_plans", "mamba_stages"]
