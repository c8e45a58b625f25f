"""Fingerprints of a stage's inputs, so that a rerun redoes exactly what is stale.

A stage's fingerprint is a flat ``{key: value}`` dict: the options the stage reads (``option:<name>``),
the package version, the cohort files' identity (``cohort``) and the fingerprints of the upstream
stages it consumes (``upstream:<stage>``). Two fingerprints are compared key by key, so the log can
say which input changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hnc_core import __version__
from hnc_core.identity import files_identity


@dataclass(frozen=True)
class StageInputs:
    """What a stage depends on: option names of :class:`RunOptions` and the stages it consumes."""

    options: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()


def cohort_identity(cohort_dir: str | Path) -> str:
    """The cohort files' identity (:func:`hnc_core.identity.files_identity`: path, size, mtime_ns of each)."""
    return files_identity(cohort_dir)


def digest(fingerprint: dict) -> str:
    """A short stable digest of a fingerprint dict (what downstream stages record as ``upstream:<stage>``)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_fingerprint(inputs: StageInputs, options, cohort_id: str, upstream: dict[str, dict]) -> dict:
    """The fingerprint of one stage from its declared inputs (``upstream``: fingerprints by stage name)."""
    fp = {"version": __version__, "cohort": cohort_id}
    for name in inputs.options:
        value = getattr(options, name)
        fp[f"option:{name}"] = list(value) if isinstance(value, tuple) else value
    for name in inputs.upstream:
        if name in upstream:
            fp[f"upstream:{name}"] = digest(upstream[name])
    return fp


def changed_keys(old: dict | None, new: dict) -> list[str]:
    """Keys whose value differs between two fingerprints (``["no fingerprint"]`` when ``old`` is missing)."""
    if not old:
        return ["no fingerprint recorded"]
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def describe_change(old: dict | None, new: dict) -> str:
    """Human-readable reason, e.g. ``option:rfs_image_size 32 -> 96``."""
    keys = changed_keys(old, new)
    if not old:
        return keys[0]
    parts = []
    for k in keys:
        if k in ("cohort",) or k.startswith("upstream:"):
            parts.append(f"{k} changed")
        else:
            parts.append(f"{k} {old.get(k)!r} -> {new.get(k)!r}")
    return ", ".join(parts)
