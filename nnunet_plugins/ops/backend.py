"""Backend choice for the selective scan and the causal conv1d.

``HNC_SCAN_BACKEND`` = ``auto`` (default) | ``cuda`` | ``portable`` | ``torch`` | ``reference``:

* ``auto``: mamba-ssm / causal-conv1d CUDA kernels for CUDA tensors when the exact function the op calls
  imports; otherwise the portable implementation, with a :class:`RuntimeWarning` (once per process and op)
  naming the import error when the tensors are on CUDA (the portable scan is far slower there).
* ``cuda``: the CUDA kernels or a :class:`BackendUnavailableError` with the import error and install hint.
* ``portable``: numba CPU kernels for CPU tensors (pure-PyTorch chunked scan if numba is missing, and on
  CUDA/MPS tensors).
* ``torch``: the pure-PyTorch chunked scan and ``F.conv1d`` on every device (no numba): what
  :func:`use_backend` selects while the network is traced to TorchScript, so the graph holds only aten ops.
* ``reference``: the sequential pure-PyTorch definition (slow; for debugging).

:func:`use_backend` overrides the variable inside a ``with`` block (this thread and process only).

The probe imports exactly what the op calls (:data:`KERNELS`: module and function), once, inside a
function, never at module import (``mamba_ssm``'s package ``__init__`` pulls triton and transformers and fails
on machines without its compiled extension). The ops call the kernels by keyword. :func:`describe` gives the
resolved choice in one line (the trainers write it to nnU-Net's log).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import warnings
from typing import Callable

import torch

ENV_VAR = "HNC_SCAN_BACKEND"
CHOICES = ("auto", "cuda", "portable", "torch", "reference")
INSTALL_HINT = ('install the CUDA kernels with `pip install "hnc-petct[cuda]"` (mamba-ssm, causal-conv1d; '
                "needs a CUDA toolkit matching your torch build), or unset HNC_SCAN_BACKEND / set it to 'auto'")
# op -> (module, function) that the op calls on the kernel path; the probe imports exactly these.
KERNELS = {"scan": ("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn"),
           "conv1d": ("causal_conv1d.causal_conv1d_interface", "causal_conv1d_fn")}
PACKAGES = {"scan": "mamba-ssm", "conv1d": "causal-conv1d"}
KERNEL_DEVICES = ("cuda",)  # device types the compiled kernels run on

log = logging.getLogger("nnunet_plugins.ops")
_logged: set[tuple[str, str, str]] = set()
_warned: set[str] = set()
_override: list[str] = []


class BackendUnavailableError(RuntimeError):
    """A backend was forced with HNC_SCAN_BACKEND but cannot run here."""


@functools.lru_cache(maxsize=None)
def load_kernel(op: str) -> tuple[Callable | None, str | None]:
    """(function, None) if the kernel function for ``op`` imports, else (None, 'ExcType: message')."""
    module, attr = KERNELS[op]
    try:
        return getattr(importlib.import_module(module), attr), None
    except Exception as exc:  # ImportError, OSError (bad .so), RuntimeError (CUDA mismatch), AttributeError
        return None, f"{type(exc).__name__}: {exc}"


def kernel(op: str) -> Callable:
    """The kernel function for ``op`` (after :func:`resolve` returned 'cuda')."""
    fn, err = load_kernel(op)
    if fn is None:
        raise BackendUnavailableError(f"{PACKAGES[op]} kernel {'.'.join(KERNELS[op])} does not import ({err})")
    return fn


def cuda_scan_available() -> bool:
    """True when mamba-ssm's ``selective_scan_fn`` imports and CUDA is usable."""
    return torch.cuda.is_available() and load_kernel("scan")[0] is not None


def cuda_conv_available() -> bool:
    """True when causal-conv1d's ``causal_conv1d_fn`` imports and CUDA is usable."""
    return torch.cuda.is_available() and load_kernel("conv1d")[0] is not None


@functools.lru_cache(maxsize=None)
def numba_available() -> bool:
    try:
        importlib.import_module("numba")
        return True
    except Exception:
        return False


@contextlib.contextmanager
def use_backend(name: str):
    """Resolve every op to ``name`` (one of :data:`CHOICES`) inside the block, whatever ``HNC_SCAN_BACKEND``."""
    if name not in CHOICES:
        raise ValueError(f"backend {name!r} is not one of {', '.join(CHOICES)}")
    _override.append(name)
    try:
        yield
    finally:
        _override.pop()


def requested_backend() -> str:
    if _override:
        return _override[-1]
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV_VAR}={value!r} is not one of {', '.join(CHOICES)}")
    return value


def _portable(op: str, device: torch.device) -> str:
    return "numba" if device.type == "cpu" and numba_available() else "torch"


def resolve(op: str, device: torch.device, quiet: bool = False) -> str:
    """Implementation for ``op`` ('scan' or 'conv1d') on ``device``: 'cuda', 'numba', 'torch' or 'reference'."""
    req = requested_backend()
    on_kernel_device = device.type in KERNEL_DEVICES
    if req == "cuda":
        _, err = load_kernel(op)
        if err is not None:
            mod, fn = KERNELS[op]
            raise BackendUnavailableError(f"{ENV_VAR}=cuda but {PACKAGES[op]}'s {mod}.{fn} does not import ({err}); "
                                          f"{INSTALL_HINT}")
        if not on_kernel_device:
            raise BackendUnavailableError(f"{ENV_VAR}=cuda but the tensors are on {device}; move the model to CUDA "
                                          "or set HNC_SCAN_BACKEND=auto")
        name = "cuda"
    elif req in ("reference", "torch"):
        name = req
    elif req == "auto" and on_kernel_device:
        _, err = load_kernel(op)
        if err is None:
            name = "cuda"
        else:
            name = _portable(op, device)
            if not quiet and op not in _warned:
                _warned.add(op)
                mod, fn = KERNELS[op]
                warnings.warn(f"{PACKAGES[op]}'s {mod}.{fn} does not import ({err}); the {op} runs on the portable "
                              f"PyTorch path on {device.type} (much slower). {INSTALL_HINT}", RuntimeWarning,
                              stacklevel=3)
    else:
        name = _portable(op, device)
    if not quiet:
        _log_once(op, name, device)
    return name


def describe(device: torch.device | str) -> str:
    """One line for logs: the implementation each op resolves to on ``device`` and the compute dtype."""
    device = torch.device(device)
    parts = []
    for op in ("scan", "conv1d"):
        try:
            name = resolve(op, device, quiet=True)
        except BackendUnavailableError as exc:
            name = f"unavailable ({exc})"
        if name == "cuda":
            mod, fn = KERNELS[op]
            name = f"cuda ({PACKAGES[op]} {mod}.{fn})"
        elif name == "numba":
            import numba

            name = f"numba {numba.__version__} CPU kernels, {numba.get_num_threads()} threads"
        elif name == "torch":
            name = "torch (portable PyTorch)" if op == "scan" else "torch (F.conv1d)"
        parts.append(f"{op}: {name}")
    return (f"HecMamba backend on {device.type}: " + "; ".join(parts)
            + f"; Mamba layers compute in float32 (autocast off); {ENV_VAR}={os.environ.get(ENV_VAR, 'auto')}")


def _log_once(op: str, name: str, device: torch.device) -> None:
    key = (op, name, device.type)
    if key not in _logged:
        _logged.add(key)
        log.info("%s backend: %s on %s (%s=%s)", op, name, device.type, ENV_VAR, os.environ.get(ENV_VAR, "auto"))
