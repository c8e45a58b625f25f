"""Fixed-width clinical vector for the network: the fold encoder's columns placed in a canonical layout.

:class:`~survival_head.features.clinical.ClinicalEncoder` only creates columns for codes seen in a
fold's training rows (others -> Unknown), so its width varies between folds. The network needs one
input width F (network_data_format, TorchScript export), so each encoded column is copied into its
slot of the canonical layout built from every allowed HECKTOR code; slots of codes the fold never saw
stay 0. With the paper's columns F = 23; with HPV status added ("paper+hpv") F = 26.

Clinical variable sets (``clinical_set``):

* ``"paper"``: Age, Gender, Tobacco, Alcohol, Performance Status, M-stage, Treatment (the paper's encoder).
* ``"paper+hpv"``: the same plus HPV Status (an extension of the paper; HECKTOR 2025's CSV has the
  column, and HPV is a strong prognostic factor in oropharyngeal cancer).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from survival_head.rfs.config import DEFAULTS

from hnc_core import schema
from survival_head.features.clinical import RFS_CATEGORICAL, RFS_NUMERIC, UNKNOWN, ClinicalEncoder


CLINICAL_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "paper": (tuple(RFS_NUMERIC), tuple(RFS_CATEGORICAL)),
    "paper+hpv": (tuple(RFS_NUMERIC), tuple(RFS_CATEGORICAL) + (schema.HPV,)),
}
DEFAULT_CLINICAL_SET = DEFAULTS.clinical_set


def clinical_columns(clinical_set: str = DEFAULT_CLINICAL_SET) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric, categorical) column names of a clinical variable set."""
    if clinical_set not in CLINICAL_SETS:
        raise ValueError(f"clinical_set must be one of {sorted(CLINICAL_SETS)}, got {clinical_set!r}")
    return CLINICAL_SETS[clinical_set]


def make_encoder(clinical_set: str = DEFAULT_CLINICAL_SET) -> ClinicalEncoder:
    """Unfitted :class:`ClinicalEncoder` for the columns of ``clinical_set``."""
    numeric, categorical = clinical_columns(clinical_set)
    return ClinicalEncoder(numeric=numeric, categorical=categorical)


def n_clinical_for(clinical_set: str = DEFAULT_CLINICAL_SET) -> int:
    """Network input width F of a clinical set (23 for "paper", 26 for "paper+hpv")."""
    return n_clinical_features(*clinical_columns(clinical_set))


def canonical_feature_names(numeric=RFS_NUMERIC, categorical=RFS_CATEGORICAL) -> list[str]:
    names = [f"{c} (z)" for c in numeric]
    for col in categorical:
        codes = sorted((str(c) for c in schema.CATEGORICAL_CODES.get(col, set())))
        names += [f"{col}={c}" for c in codes] + [f"{col}={UNKNOWN}"]
    return names


def n_clinical_features(numeric=RFS_NUMERIC, categorical=RFS_CATEGORICAL) -> int:
    return len(canonical_feature_names(numeric, categorical))


def encode_fixed(encoder: ClinicalEncoder, table: pd.DataFrame) -> np.ndarray:
    """(n, F) float32 clinical matrix in the canonical layout, from a fitted encoder."""
    names = canonical_feature_names(encoder.numeric, encoder.categorical)
    slot = {n: i for i, n in enumerate(names)}
    enc = encoder.transform(table)
    out = np.zeros((len(table), len(names)), np.float32)
    for j, name in enumerate(encoder.feature_names_):
        if name not in slot:
            raise ValueError(f"encoder column {name!r} has no slot in the canonical clinical layout")
        out[:, slot[name]] = enc[:, j]
    return out
