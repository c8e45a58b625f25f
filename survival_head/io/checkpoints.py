"""Weights on disk: atomic save with a sha256, verified weights-only load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hnc_core.hashing import sha256_file
from hnc_core.io import atomic_path


class WeightsError(RuntimeError):
    """Missing, corrupt or mismatching weights: never fall back to a random model."""


def save_weights(state: Any, path: str | Path) -> str:
    """Save a state dict (tensors and plain containers only) atomically; return its sha256."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return sha256_file(path)


def load_weights(path: str | Path, sha256: str | None = None, map_location: str = "cpu") -> Any:
    """Load with ``weights_only=True`` after checking the file exists and (if given) its sha256."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path} (train the bundle first, or place the released "
                           "weights there); refusing to run with random weights")
    if sha256:
        actual = sha256_file(path)
        if actual != sha256:
            raise WeightsError(f"checksum mismatch for {path}: expected sha256 {sha256}, got {actual}")
    return torch.load(path, map_location=map_location, weights_only=True)
