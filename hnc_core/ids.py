"""Patient identifiers: tolerant when reading (``CHUM_001`` == ``CHUM-001``), strict when writing."""

from __future__ import annotations


def canonical_id(raw: str) -> str:
    """Return the canonical HECKTOR 2025 spelling of a patient ID (``CENTER-NNN``, hyphen)."""
    return str(raw).strip().replace("_", "-")
