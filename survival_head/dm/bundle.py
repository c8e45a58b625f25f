"""Helpers the DM bundle configs reference (``$bundle_root()``): the shared bundle-root lookup."""

from __future__ import annotations

from survival_head.io.bundle_root import bundle_root

__all__ = ["bundle_root"]
