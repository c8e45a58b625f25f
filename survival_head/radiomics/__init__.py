"""Radiomics for the DM model: pyradiomics extraction (``extract``), cohort-scale runs with a cache,
process pool or Dask (``cohort``), and fold-safe feature selection (``selection``)."""

from __future__ import annotations

from survival_head.radiomics.cohort import extract_cohort
from survival_head.radiomics.extract import (REGIONS, expected_feature_count, extract_patient, load_params,
                                             params_path)
from survival_head.radiomics.selection import RadiomicsSelector

__all__ = ["extract_cohort", "extract_patient", "expected_feature_count", "load_params", "params_path",
           "RadiomicsSelector", "REGIONS"]
