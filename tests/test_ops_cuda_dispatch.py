"""The CUDA dispatch of the ops, run on CPU with upstream's own Python references bound in place of the
compiled kernels (causal-conv1d's ``causal_conv1d_ref`` and mamba-ssm's ``selective_scan_ref`` have the kernels'
signatures; taken from the pinned sdists, see tests/upstream_refs.py)."""

from __future__ import annotations

import pytest
import torch

from nnunet_plugins.ops import backend, causal_conv1d_fn, causal_conv1d_ref, selective_scan_fn
from upstream_refs import load  # tests/ is on sys.path under pytest


@pytest.fixture()
def kernels_bound(monkeypatch):
    """CPU counts as a kernel device and the 'kernels' are upstream's references; returns call counters."""
    conv, scan = load()
    calls = {"scan": 0, "conv1d": 0}

    def counted(op, fn):
        def wrapper(*args, **kwargs):
            calls[op] += 1
            return fn(*args, **kwargs)
        return wrapper

    bound = {"scan": counted("scan", scan.selective_scan_ref), "conv1d": counted("conv1d", conv.causal_conv1d_ref)}
    monkeypatch.setattr(backend, "KERNEL_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(backend, "load_kernel", lambda op: (bound[op], None))
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    return calls


def test_conv1d_dispatch_calls_the_kernel_by_keyword(kernels_bound):
    """causal-conv1d >= 1.2 has seq_idx (kernel) / initial_states (ref) 4th: a positional 'silu' breaks."""
    x, w, b = torch.randn(2, 6, 33), torch.randn(6, 4), torch.randn(6)
    out = causal_conv1d_fn(x, w, b, "silu")
    assert kernels_bound["conv1d"] == 1
    assert torch.allclose(out, causal_conv1d_ref(x, w, b, "silu"), atol=1e-6)


@pytest.mark.parametrize("forced", [False, True])
def test_mamba_block_through_kernel_dispatch_matches_portable(kernels_bound, monkeypatch, forced):
    from nnunet_plugins.networks.mamba_block import MambaLayer

    torch.manual_seed(0)
    layer = MambaLayer(8)
    x = torch.randn(1, 8, 4, 5, 6)
    results = []
    for env in ("cuda" if forced else "auto", "portable"):
        monkeypatch.setenv(backend.ENV_VAR, env)
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append((y.detach(), xi.grad, [p.grad.clone() for p in layer.parameters()]))
    assert kernels_bound == {"scan": 1, "conv1d": 1}  # the first pass went through the bound kernels only
    (y1, gx1, gp1), (y2, gx2, gp2) = results
    assert torch.allclose(y1, y2, atol=1e-5) and torch.allclose(gx1, gx2, atol=1e-5)
    for a, b in zip(gp1, gp2):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_kernel_import_failure_falls_back_with_warning_or_errors_when_forced(monkeypatch):
    """The probe imports exactly the module and function the op calls; here it does not exist."""
    monkeypatch.setattr(backend, "KERNEL_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(backend, "KERNELS", {**backend.KERNELS, "scan": ("hnc_no_such_module.interface", "fn")})
    monkeypatch.setattr(backend, "_warned", set())
    backend.load_kernel.cache_clear()
    try:
        ins = [torch.randn(1, 4, 10), torch.rand(1, 4, 10), -torch.rand(4, 3), torch.randn(1, 3, 10),
               torch.randn(1, 3, 10)]
        monkeypatch.setenv(backend.ENV_VAR, "auto")
        with pytest.warns(RuntimeWarning, match="hnc_no_such_module.interface.fn does not import"):
            out = selective_scan_fn(*ins)
        monkeypatch.setenv(backend.ENV_VAR, "reference")
        assert torch.allclose(out, selective_scan_fn(*ins), atol=1e-5)
        monkeypatch.setenv(backend.ENV_VAR, "cuda")
        with pytest.raises(backend.BackendUnavailableError, match="ModuleNotFoundError.*hnc_no_such_module"):
            selective_scan_fn(*ins)
    finally:
        backend.load_kernel.cache_clear()


def test_describe_names_the_resolved_backend(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    line = backend.describe("cpu")
    assert "scan: numba" in line and "conv1d: numba" in line and "float32" in line
    monkeypatch.setenv(backend.ENV_VAR, "reference")
    assert "scan: reference" in backend.describe("cpu")


def test_trainer_writes_resolved_backend_to_nnunet_log(monkeypatch):
    """At training start and before the final validation's prediction, in nnU-Net's own log."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_plugins.trainers.HecMambaTrainer import HecMambaTrainer

    monkeypatch.setattr(nnUNetTrainer, "on_train_start", lambda self: None)
    monkeypatch.setattr(nnUNetTrainer, "perform_actual_validation", lambda self, save_probabilities=False: None)
    trainer = HecMambaTrainer.__new__(HecMambaTrainer)  # hooks only; nothing of __init__ is needed
    trainer.device = torch.device("cpu")
    lines = []
    trainer.print_to_log_file = lambda *a, **k: lines.append(" ".join(map(str, a)))
    trainer.on_train_start()
    trainer.perform_actual_validation()
    assert len(lines) == 2
    assert lines[0].startswith("training start: HecMamba backend on cpu: scan: numba")
    assert lines[1].startswith("validation (prediction) start:") and "conv1d: numba" in lines[1]
