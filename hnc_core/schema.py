"""HECKTOR 2025 Task-2 clinical table: column names and the codes each column may hold.

One source of truth for the data layer, the synthetic generator and the clinical encoders.
"""

from __future__ import annotations

CLINICAL_CSV_NAME = "HECKTOR_2025_Training_Task_2.csv"
GROUND_TRUTH_CSV_NAME = "ground_truth.csv"
GROUND_TRUTH_MODEL_NAME = "ground_truth_model.json"

PATIENT_ID = "PatientID"
CENTER = "CenterID"
AGE = "Age"
GENDER = "Gender"
TOBACCO = "Tobacco Consumption"
ALCOHOL = "Alcohol Consumption"
PERFORMANCE = "Performance Status"
TREATMENT = "Treatment"
M_STAGE = "M-stage"
HPV = "HPV Status"
RFS = "RFS"  # days
RELAPSE = "Relapse"  # 1 = event
# Not a HECKTOR column: distant-metastasis label (0/1) used by the DM model; optional.
DM = "DistantMetastasis"

CLINICAL_COLUMNS = [
    PATIENT_ID, CENTER, AGE, GENDER, TOBACCO, ALCOHOL, PERFORMANCE, TREATMENT, M_STAGE, HPV, RFS, RELAPSE,
]

# Allowed codes of the categorical columns (missing values are always allowed).
CATEGORICAL_CODES: dict[str, set] = {
    GENDER: {0, 1},            # 0 female, 1 male
    TOBACCO: {0, 1},
    ALCOHOL: {0, 1},
    TREATMENT: {0, 1},         # 0 radiotherapy +/- chemo, 1 surgery included
    HPV: {0, 1},
    PERFORMANCE: {0, 1, 2, 3, 4},  # ECOG
    M_STAGE: {"M0", "M1", "Mx"},
    DM: {0, 1},
}

# File-name suffixes of the HECKTOR 2025 layout.
CT_SUFFIX = "__CT.nii.gz"
PET_SUFFIX = "__PT.nii.gz"
LABEL_SUFFIX = ".nii.gz"
LABELS = {0: "background", 1: "GTVp", 2: "GTVn"}
