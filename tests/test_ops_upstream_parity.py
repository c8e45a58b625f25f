"""``selective_scan_fn`` against mamba-ssm's released ``selective_scan_ref`` on every B/C layout its signature
accepts (forward, last state, all gradients), and refusal of the layouts it does not accept."""

from __future__ import annotations

import itertools

import pytest
import torch

from nnunet_plugins.ops import selective_scan_fn
from upstream_refs import load  # tests/ is on sys.path under pytest

BATCH, DIM, LENGTH, N = 2, 8, 130, 4  # 130 steps: three kernel chunks, the last one partial


@pytest.fixture(scope="module")
def upstream_scan_ref():
    return load()[1].selective_scan_ref


def _bc(kind: str, g: torch.Generator) -> torch.Tensor:
    shape = {"const": (DIM, N), "shared": (BATCH, N, LENGTH), "grouped": (BATCH, 2, N, LENGTH)}[kind]
    return torch.randn(*shape, generator=g)


def _inputs(b_kind: str, c_kind: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ins = [torch.randn(BATCH, DIM, LENGTH, generator=g), torch.rand(BATCH, DIM, LENGTH, generator=g) * 0.5 - 0.5,
           -torch.rand(DIM, N, generator=g) * 2 - 0.1, _bc(b_kind, g), _bc(c_kind, g), torch.randn(DIM, generator=g),
           torch.randn(BATCH, DIM, LENGTH, generator=g), torch.rand(DIM, generator=g) * 0.2]
    return [t.requires_grad_() for t in ins]


def _rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


KINDS = ("const", "shared", "grouped")


@pytest.mark.parametrize("b_kind,c_kind", list(itertools.product(KINDS, KINDS)))
@pytest.mark.parametrize("backend_name", ["portable", "torch"])
def test_every_bc_layout_matches_mamba_ssm_reference(b_kind, c_kind, backend_name, upstream_scan_ref, monkeypatch):
    from nnunet_plugins.ops import backend

    if backend_name == "torch":
        monkeypatch.setattr(backend, "numba_available", lambda: False)
    ins = _inputs(b_kind, c_kind)
    w = torch.randn(BATCH, DIM, LENGTH, generator=torch.Generator().manual_seed(1))
    results = []
    for fn in (selective_scan_fn, upstream_scan_ref):
        out, last = fn(*ins[:5], D=ins[5], z=ins[6], delta_bias=ins[7], delta_softplus=True, return_last_state=True)
        results.append((out, last, torch.autograd.grad((out * w).sum(), ins)))
    (o1, l1, g1), (o2, l2, g2) = results
    assert _rel(o1, o2) < 1e-5, "forward"
    assert _rel(l1, l2) < 1e-5, "last state"
    for name, a, b in zip(("u", "delta", "A", "B", "C", "D", "z", "delta_bias"), g1, g2):
        assert a.shape == b.shape and _rel(a, b) < 2e-5, f"d{name}"


@pytest.mark.parametrize("arg,bad,match", [
    ("B", (DIM + 1, N), "B must be"),
    ("C", (BATCH, N, LENGTH + 7), "C must be"),
    ("B", (BATCH, 3, N, LENGTH), "G dividing"),
    ("C", (BATCH + 1, N, LENGTH), "C must be"),
    ("A", (DIM, N, 1), "A must be"),
    ("delta", (BATCH, DIM, LENGTH - 1), "delta must have"),
    ("z", (BATCH, DIM, 1), "z must have"),
    ("D", (DIM + 2,), "D must be"),
    ("delta_bias", (1,), "delta_bias must be"),
])
def test_refuses_shapes_outside_the_signature(arg, bad, match):
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    ins = dict(zip(names, [t.detach() for t in _inputs("shared", "shared")]))
    ins[arg] = torch.randn(*bad)
    with pytest.raises(ValueError, match=match):
        selective_scan_fn(**ins)


def test_refuses_integer_and_mixed_device_inputs():
    ins = [t.detach() for t in _inputs("shared", "shared")]
    with pytest.raises(TypeError, match="dtype"):
        selective_scan_fn(ins[0].long(), *ins[1:5])
    with pytest.raises(ValueError, match="meta"):
        selective_scan_fn(ins[0], ins[1], ins[2], ins[3].to("meta"), ins[4])


def test_kernel_function_refuses_mismatched_groups():
    """The autograd Function is public too: B and C with different group counts never reach the kernel."""
    from nnunet_plugins.ops import SelectiveScanFn

    u, delta, A = torch.randn(1, 4, 9), torch.rand(1, 4, 9), -torch.rand(4, 2)
    Bx, Cx = torch.randn(1, 4, 2, 9), torch.randn(1, 1, 2, 9)
    with pytest.raises(ValueError, match="kernel needs"):
        SelectiveScanFn.apply(u, delta, A, Bx, Cx, None, None, None, False)
