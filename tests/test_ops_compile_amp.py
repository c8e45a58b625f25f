"""nnU-Net's defaults on CUDA are torch.compile + AMP: the Mamba layers must compile to graphs whose size does not
depend on the sequence length (the scan is one opaque region), and run in float32 under autocast."""

from __future__ import annotations

import pytest
import torch

from nnunet_plugins.networks.mamba_block import MambaLayer
from nnunet_plugins.ops import backend


def _compiled_graph_sizes(module: torch.nn.Module, x: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Number of FX nodes of every graph dynamo hands to the compiler for one forward."""
    torch._dynamo.reset()
    sizes: list[int] = []

    def counting_backend(gm, example_inputs):
        sizes.append(len(gm.graph.nodes))
        return gm.forward

    out = torch.compile(module, backend=counting_backend, dynamic=False)(x)
    torch._dynamo.reset()
    return sizes, out


@pytest.mark.parametrize("portable", ["torch", "numba"])
def test_compiled_mamba_layer_does_not_grow_with_sequence_length(portable, monkeypatch):
    if portable == "torch":  # the path CUDA takes without mamba-ssm: a Python loop over chunks
        monkeypatch.setattr(backend, "numba_available", lambda: False)
    torch.manual_seed(0)
    layer = MambaLayer(8).eval()
    results = {}
    for side in (4, 8):  # 64 vs 512 tokens: 4 vs 32 chunks of the PyTorch scan
        x = torch.randn(1, 8, side, side, side)
        sizes, out = _compiled_graph_sizes(layer, x)
        with torch.no_grad():
            assert torch.allclose(out, layer(x), atol=1e-5)
        results[side] = sizes
    assert results[4] and results[4] == results[8], results
    assert max(results[8]) < 200, results


def test_mamba_layer_runs_in_float32_under_autocast():
    """CPU bf16 autocast stands in for nnU-Net's CUDA fp16 autocast."""
    torch.manual_seed(0)
    layer = MambaLayer(8)
    seen = {}

    def record(name):
        def hook(mod, inputs, output):
            seen[name] = (inputs[0].dtype, output.dtype)
        return hook

    for name in ("norm", "mamba.in_proj", "mamba.x_proj", "mamba.dt_proj", "mamba.out_proj"):
        layer.get_submodule(name).register_forward_hook(record(name))
    x = torch.randn(1, 8, 4, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.to(torch.bfloat16))
    y.float().sum().backward()
    assert all(dt == (torch.float32, torch.float32) for dt in seen.values() if dt), seen
    assert y.dtype == torch.bfloat16  # hands the caller back its dtype
    ref = layer(x.to(torch.bfloat16).float())
    assert torch.allclose(y.float(), ref.to(torch.bfloat16).float(), atol=1e-2)
