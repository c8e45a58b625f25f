"""Weights on disk: atomic save with a sha256, verified weights-only load, one integrity manifest per model.

``integrity.json`` (written beside a trained model) lists the sha256 of EVERY artefact a prediction reads
(network weights, survival-model coefficients, clinical encoders, ensemble weights and thresholds in the
model manifest, radiomics selector): :func:`verify_integrity` checks them all before anything is loaded and
refuses a missing manifest, a missing file, a null hash or a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable

from hnc_core.hashing import sha256_file
from hnc_core.io import atomic_path, write_json_atomic

INTEGRITY_NAME = "integrity.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WeightsError(RuntimeError):
    """Missing, corrupt or mismatching weights: never fall back to a random model."""


def save_weights(state: Any, path: str | Path) -> str:
    """Save a state dict (tensors and plain containers only) atomically; return its sha256."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return sha256_file(path)


def check_sha256(path: str | Path, sha256: str | None) -> None:
    """Raise :class:`WeightsError` unless ``path`` exists and hashes to ``sha256`` (a null hash is refused)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path} (train the bundle first, or place the released "
                           "files there); refusing to run with a partial or random model")
    if not isinstance(sha256, str) or not _SHA256.match(sha256.lower()):
        raise WeightsError(f"no valid sha256 recorded for {path} (got {sha256!r}): refusing to load an "
                           "unverified file")
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise WeightsError(f"checksum mismatch for {path}: expected sha256 {sha256}, got {actual}")


def load_weights(path: str | Path, sha256: str | None = None, map_location: str = "cpu") -> Any:
    """Load with ``weights_only=True`` after checking the file exists and matches ``sha256``.

    ``sha256`` is required: ``None`` (or anything that is not 64 hex digits) raises :class:`WeightsError`.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path} (train the bundle first, or place the released "
                           "weights there); refusing to run with random weights")
    check_sha256(path, sha256)
    return torch.load(path, map_location=map_location, weights_only=True)


def write_integrity(root: str | Path, files: Iterable[str]) -> dict:
    """Hash ``files`` (paths relative to ``root``) into ``root/integrity.json``; return its content."""
    root = Path(root)
    content = {"format": "hnc-petct-integrity/1", "algorithm": "sha256",
               "files": {str(f): sha256_file(root / f) for f in sorted(set(files))}}
    write_json_atomic(root / INTEGRITY_NAME, content)
    return content


def verify_integrity(root: str | Path, required: Iterable[str] = ()) -> dict[str, str]:
    """Check every file listed in ``root/integrity.json`` (and that each of ``required`` is listed).

    Returns ``{relative path: sha256}``. Raises :class:`WeightsError` on a missing manifest, an unlisted
    required file, a null/invalid hash, a missing file or a mismatch.
    """
    root = Path(root)
    path = root / INTEGRITY_NAME
    if not path.is_file():
        raise WeightsError(f"{path} missing: cannot verify the model's artefacts (re-train, or restore the "
                           "released model folder); refusing to predict with unverified files")
    try:
        files = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path} is unreadable: {exc}") from exc
    missing = sorted(set(required) - set(files))
    if missing:
        raise WeightsError(f"{path} does not cover {missing}: refusing to load unverified files")
    for rel, sha in files.items():
        check_sha256(root / rel, sha)
    return dict(files)
