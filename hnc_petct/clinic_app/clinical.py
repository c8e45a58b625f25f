"""The patient's clinical variables: age and sex from the DICOM header, the rest from a JSON sidecar.

The sidecar ``clinical.json`` (in the study folder, or the file named by ``HNC_CLINICAL_JSON``) uses
the HECKTOR 2025 column names and codes, e.g. ``{"Tobacco Consumption": 1, "HPV Status": null,
"M-stage": "M0"}``. A variable that is absent or null stays missing and the models' clinical encoders
(fitted on the training folds) encode it as ``Unknown``, exactly as a missing value in training.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from hnc_core import schema

from .errors import StudyInputError

SIDECAR_NAME = "clinical.json"
HEADER_COLUMNS = (schema.AGE, schema.GENDER)
SIDECAR_COLUMNS = (schema.TOBACCO, schema.ALCOHOL, schema.PERFORMANCE, schema.TREATMENT, schema.M_STAGE,
                   schema.HPV)


def age_years(patient_age: str | None) -> float | None:
    """DICOM AS (``062Y``, ``030M``, ``010W``, ``100D``) -> years; None when absent or malformed."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY]?)\s*", str(patient_age or ""))
    if not m:
        return None
    n, unit = float(m.group(1)), (m.group(2) or "Y")
    return round(n / {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}[unit], 2)


def sex_code(patient_sex: str | None) -> int | None:
    """DICOM PatientSex -> HECKTOR Gender code (1 male, 0 female); None for O, empty or absent."""
    return {"M": 1, "F": 0}.get(str(patient_sex or "").strip().upper())


def find_sidecar(input_dir: str | os.PathLike | None) -> Path | None:
    env = os.environ.get("HNC_CLINICAL_JSON")
    if env:
        if not Path(env).is_file():
            raise StudyInputError(f"HNC_CLINICAL_JSON={env} does not exist")
        return Path(env)
    if input_dir:
        hits = sorted(Path(input_dir).rglob(SIDECAR_NAME))
        if len(hits) > 1:
            raise StudyInputError(f"{len(hits)} clinical sidecars ({', '.join(map(str, hits))}); keep one")
        return hits[0] if hits else None
    return None


def clinical_record(patient_age: str | None, patient_sex: str | None, sidecar: Path | None,
                    patient_id: str | None = None) -> tuple[dict, list[str]]:
    """(one-row clinical record in HECKTOR column names, warnings). Missing values are None."""
    warnings: list[str] = []
    rec: dict = {schema.PATIENT_ID: patient_id, schema.AGE: age_years(patient_age),
                 schema.GENDER: sex_code(patient_sex)}
    for col in SIDECAR_COLUMNS:
        rec[col] = None
    if sidecar is None:
        warnings.append(f"no clinical sidecar ({SIDECAR_NAME}): {', '.join(SIDECAR_COLUMNS)} encoded as Unknown")
        return rec, warnings
    try:
        side = json.loads(Path(sidecar).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StudyInputError(f"clinical sidecar {sidecar} is not valid JSON: {e}") from e
    if not isinstance(side, dict):
        raise StudyInputError(f"clinical sidecar {sidecar} must hold one JSON object")
    sid = side.get(schema.PATIENT_ID)
    if sid is not None and patient_id is not None and str(sid) != str(patient_id):
        raise StudyInputError(f"clinical sidecar {sidecar} is for PatientID {sid!r}, the study for {patient_id!r}")
    unknown = sorted(set(side) - set(SIDECAR_COLUMNS) - set(HEADER_COLUMNS) - {schema.PATIENT_ID})
    if unknown:
        warnings.append(f"clinical sidecar: ignored unknown keys {unknown}")
    for col in SIDECAR_COLUMNS:
        v = side.get(col)
        rec[col] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    for col in HEADER_COLUMNS:  # the header wins; the sidecar only fills a gap
        if rec[col] is None and side.get(col) is not None:
            rec[col] = side[col]
    missing = [c for c in (*HEADER_COLUMNS, *SIDECAR_COLUMNS) if rec[c] is None]
    if missing:
        warnings.append(f"clinical variables missing (encoded as Unknown / median age): {', '.join(missing)}")
    return rec, warnings
