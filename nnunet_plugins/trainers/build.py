"""Network construction for the HecMamba trainers, accepting both nnU-Net build signatures.

* nnU-Net >= 2.7: ``(plans_manager, configuration_manager, num_input_channels, num_output_channels,
  enable_deep_supervision=True)``
* nnU-Net 2.3-2.6: ``(architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import,
  num_input_channels, num_output_channels, enable_deep_supervision=True)``
"""

from __future__ import annotations

import inspect
import pydoc

from torch import nn

NEW = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d) for n, d in (
    ("plans_manager", inspect.Parameter.empty), ("configuration_manager", inspect.Parameter.empty),
    ("num_input_channels", inspect.Parameter.empty), ("num_output_channels", inspect.Parameter.empty),
    ("enable_deep_supervision", True))])
OLD = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d) for n, d in (
    ("architecture_class_name", inspect.Parameter.empty), ("arch_init_kwargs", inspect.Parameter.empty),
    ("arch_init_kwargs_req_import", inspect.Parameter.empty), ("num_input_channels", inspect.Parameter.empty),
    ("num_output_channels", inspect.Parameter.empty), ("enable_deep_supervision", True))])


def _is_old_style(args: tuple, kwargs: dict) -> bool:
    if "architecture_class_name" in kwargs or "arch_init_kwargs" in kwargs:
        return True
    if "plans_manager" in kwargs:
        return False
    return bool(args) and isinstance(args[0], str)


def build_from_plans_args(net_class: type, *args, **kwargs) -> nn.Module:
    """Build ``net_class`` (HecMamba or an ablation) from either signature's arguments."""
    from nnunet_plugins.networks.hecmamba import hecmamba_kwargs_from_plans

    if _is_old_style(args, kwargs):
        b = OLD.bind(*args, **kwargs)
        b.apply_defaults()
        arch = dict(b.arguments["arch_init_kwargs"])
        for key in b.arguments["arch_init_kwargs_req_import"]:
            if isinstance(arch.get(key), str):
                arch[key] = pydoc.locate(arch[key])
        patch = None
    else:
        b = NEW.bind(*args, **kwargs)
        b.apply_defaults()
        cm = b.arguments["configuration_manager"]
        arch = dict(cm.network_arch_init_kwargs)
        for key in cm.network_arch_init_kwargs_req_import:
            if isinstance(arch.get(key), str):
                arch[key] = pydoc.locate(arch[key])
        patch = cm.patch_size
    kw = hecmamba_kwargs_from_plans(arch, patch)
    net = net_class(input_channels=b.arguments["num_input_channels"], num_classes=b.arguments["num_output_channels"],
                    deep_supervision=bool(b.arguments["enable_deep_supervision"]), **kw)
    net.apply(net.initialize)
    return net


def _deep_supervision(args: tuple, kwargs: dict) -> bool:
    sig = OLD if _is_old_style(args, kwargs) else NEW
    b = sig.bind(*args, **kwargs)
    b.apply_defaults()
    return bool(b.arguments["enable_deep_supervision"])


_printed: list[bool] = []


def _print_backend_once() -> None:
    """At prediction start (nnU-Net's predictor has no log file): the backend on the device it will use."""
    if not _printed:
        _printed.append(True)
        import torch

        from nnunet_plugins.ops.backend import describe

        print(describe("cuda" if torch.cuda.is_available() else "cpu"), flush=True)


def make_builder(net_class: type):
    """A ``build_network_architecture`` for ``net_class`` that accepts both signatures and advertises the
    new one (nnU-Net >= 2.7 inspects it for ``plans_manager``)."""

    def build_network_architecture(*args, **kwargs) -> nn.Module:
        net = build_from_plans_args(net_class, *args, **kwargs)
        if not _deep_supervision(args, kwargs):  # nnUNetv2_predict builds without deep supervision
            _print_backend_once()
        return net

    build_network_architecture.__signature__ = NEW
    build_network_architecture.__doc__ = f"Build {net_class.__name__} from nnU-Net plans (either signature)."
    return build_network_architecture
