"""Happy path of the HECKTOR-layout reader."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from hnc_core import schema
from hnc_core.cohort import load_cohort
from hnc_core.ids import canonical_id


def test_reads_every_patient_without_problems(tiny_cohort):
    cohort = load_cohort(tiny_cohort)
    assert cohort.problems == []
    assert len(cohort.patients) == 4
    for pid, rec in cohort.patients.items():
        assert rec.ct.name == f"{pid}__CT.nii.gz"
        assert rec.pet.name == f"{pid}__PT.nii.gz"
        assert rec.label.name == f"{pid}.nii.gz"
        assert rec.rfs_days > 0 and rec.relapse in (0, 1)
    for task in ("images", "segmentation", "rfs", "dm"):
        assert cohort.usable_ids(task) == sorted(cohort.patients)


def test_clinical_table_and_outcomes(tiny_cohort):
    cohort = load_cohort(tiny_cohort, check_images=False)
    csv = pd.read_csv(tiny_cohort / schema.CLINICAL_CSV_NAME)
    assert list(cohort.clinical.index) == list(csv[schema.PATIENT_ID])
    y = cohort.survival_outcome(cohort.usable_ids("rfs"))
    assert y.dtype.names == ("event", "time")
    row = csv.set_index(schema.PATIENT_ID).loc[cohort.usable_ids("rfs")]
    np.testing.assert_array_equal(y["time"], row[schema.RFS].to_numpy(float))
    np.testing.assert_array_equal(y["event"], row[schema.RELAPSE].to_numpy() == 1)


def test_underscore_ids_are_matched_to_hyphen_ids(cohort_copy):
    pid = sorted(p.name for p in cohort_copy.iterdir() if p.is_dir())[0]
    alt = pid.replace("-", "_")
    folder = cohort_copy / pid
    for f in list(folder.iterdir()):
        f.rename(folder / f.name.replace(pid, alt))
    folder.rename(cohort_copy / alt)
    cohort = load_cohort(cohort_copy)
    assert cohort.problems == []
    assert pid in cohort.patients and alt not in cohort.patients
    assert cohort.patients[pid].ct.name == f"{alt}__CT.nii.gz"
    assert canonical_id(alt) == pid


def test_non_patient_folders_and_extra_files_are_ignored(cohort_copy):
    (cohort_copy / "report").mkdir()
    (cohort_copy / "report" / "notes.txt").write_text("x")
    pid = sorted(p.name for p in cohort_copy.iterdir() if p.is_dir() and p.name != "report")[0]
    shutil.copy(cohort_copy / pid / f"{pid}__CT.nii.gz", cohort_copy / pid / f"{pid}__RTDOSE.nii.gz")
    cohort = load_cohort(cohort_copy)
    assert "REPORT" not in cohort.patients and "report" not in cohort.patients
    assert cohort.problems == []
