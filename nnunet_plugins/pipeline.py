"""Python API for the main pipeline (stable names): :func:`convert_cohort`, :func:`evaluate_folder`."""

from __future__ import annotations

from nnunet_plugins.convert import ConversionError, convert_cohort
from nnunet_plugins.evaluate import evaluate_folder

__all__ = ["ConversionError", "convert_cohort", "evaluate_folder"]
