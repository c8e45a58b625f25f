"""Shared foundation of hnc-petct: HECKTOR-layout data layer, synthetic cohort, CLI.

It lives in its own small package because both model families depend on it
(``nnunet_plugins`` for segmentation, ``survival_head`` for outcome models) and
neither should import the other.
"""

from __future__ import annotations

__version__ = "0.1.0"
