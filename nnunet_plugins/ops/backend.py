"""Backend choice for the selective scan and the causal conv1d.

``HNC_SCAN_BACKEND`` = ``auto`` (default) | ``cuda`` | ``portable`` | ``reference``:

* ``auto``: mamba-ssm / causal-conv1d CUDA kernels when a *working* compiled kernel is importable and the
  tensors are on CUDA; the portable implementation otherwise.
* ``cuda``: the CUDA kernels or a :class:`BackendUnavailableError` with the install hint.
* ``portable``: numba CPU kernels for CPU tensors (pure-PyTorch chunked scan if numba is missing, and on
  CUDA/MPS tensors).
* ``reference``: the sequential pure-PyTorch definition (slow; for debugging).

The CUDA packages are never imported at module import: ``import mamba_ssm`` fails on machines without its
compiled extension, so we probe the extension modules (``selective_scan_cuda``, ``causal_conv1d_cuda``)
once, inside a function, and cache the answer. The backend actually used is logged once per
(op, backend, device) at INFO level by logger ``nnunet_plugins.ops``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os

import torch

ENV_VAR = "HNC_SCAN_BACKEND"
CHOICES = ("auto", "cuda", "portable", "reference")
INSTALL_HINT = ('install the CUDA kernels with `pip install "hnc-petct[cuda]"` (mamba-ssm, causal-conv1d; '
                "needs a CUDA toolkit matching your torch build), or unset HNC_SCAN_BACKEND / set it to 'auto'")

log = logging.getLogger("nnunet_plugins.ops")
_logged: set[tuple[str, str, str]] = set()


class BackendUnavailableError(RuntimeError):
    """A backend was forced with HNC_SCAN_BACKEND but cannot run here."""


@functools.lru_cache(maxsize=None)
def _probe(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # ImportError, OSError (bad .so), RuntimeError (CUDA mismatch)
        return False


def cuda_scan_available() -> bool:
    """True when mamba-ssm's compiled selective-scan kernel imports and CUDA is usable."""
    return torch.cuda.is_available() and _probe("selective_scan_cuda")


def cuda_conv_available() -> bool:
    """True when causal-conv1d's compiled kernel imports and CUDA is usable."""
    return torch.cuda.is_available() and _probe("causal_conv1d_cuda")


def numba_available() -> bool:
    return _probe("numba")


def requested_backend() -> str:
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV_VAR}={value!r} is not one of {', '.join(CHOICES)}")
    return value


def resolve(op: str, device: torch.device) -> str:
    """Implementation for ``op`` ('scan' or 'conv1d') on ``device``: 'cuda', 'numba', 'torch' or 'reference'."""
    req = requested_backend()
    have_cuda = cuda_scan_available() if op == "scan" else cuda_conv_available()
    if req == "cuda":
        if not have_cuda:
            pkg = "mamba-ssm (selective_scan_cuda)" if op == "scan" else "causal-conv1d (causal_conv1d_cuda)"
            raise BackendUnavailableError(f"{ENV_VAR}=cuda but no working {pkg} CUDA kernel was found; {INSTALL_HINT}")
        if device.type != "cuda":
            raise BackendUnavailableError(f"{ENV_VAR}=cuda but the tensors are on {device}; move the model to CUDA "
                                          "or set HNC_SCAN_BACKEND=auto")
        name = "cuda"
    elif req == "reference":
        name = "reference"
    elif req == "auto" and have_cuda and device.type == "cuda":
        name = "cuda"
    elif op == "scan" and device.type == "cpu" and numba_available():
        name = "numba"
    else:
        name = "torch"
    _log_once(op, name, device)
    return name


def _log_once(op: str, name: str, device: torch.device) -> None:
    key = (op, name, device.type)
    if key not in _logged:
        _logged.add(key)
        log.info("%s backend: %s on %s (%s=%s)", op, name, device.type, ENV_VAR, os.environ.get(ENV_VAR, "auto"))
