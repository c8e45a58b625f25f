"""Selective-scan and causal-conv1d ops with CUDA (mamba-ssm) and portable (numba / PyTorch) backends."""

from __future__ import annotations

from nnunet_plugins.ops.backend import BackendUnavailableError, resolve
from nnunet_plugins.ops.conv1d import causal_conv1d_fn, causal_conv1d_ref
from nnunet_plugins.ops.scan_ref import selective_scan_ref
from nnunet_plugins.ops.selective_scan import SelectiveScanFn, selective_scan_fn

__all__ = ["BackendUnavailableError", "SelectiveScanFn", "causal_conv1d_fn", "causal_conv1d_ref", "resolve",
           "selective_scan_fn", "selective_scan_ref"]
