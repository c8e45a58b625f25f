"""The voxel checks run once per unchanged patient across processes (hnc_core.check_memo)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

import hnc_core.check_memo as check_memo
import hnc_core.cohort as cohort_mod


def _count_checks(monkeypatch):
    calls = []
    real = cohort_mod._check_images_now
    monkeypatch.setattr(cohort_mod, "_check_images_now", lambda rec, sink: (calls.append(rec.patient_id),
                                                                              real(rec, sink)))
    return calls


def _fresh_memo(monkeypatch, folder):
    monkeypatch.setenv("HNC_PETCT_CHECK_CACHE", str(folder))
    monkeypatch.setattr(check_memo, "_DIR", [])


def _problems(c):
    return sorted((p.patient_id, p.file, p.code, p.severity) for p in c.problems)


def test_unchanged_patients_are_not_decoded_again_and_edits_are_seen(cohort_copy, tmp_path, monkeypatch):
    _fresh_memo(monkeypatch, tmp_path / "memo")
    calls = _count_checks(monkeypatch)
    first = cohort_mod.load_cohort(cohort_copy, check_images=True)
    n = len([p for p in first.patients.values() if p.folder is not None])
    assert len(calls) == n and n >= 4
    again = cohort_mod.load_cohort(cohort_copy, check_images=True)
    assert len(calls) == n and _problems(again) == _problems(first)  # replayed, not recomputed
    pid = sorted(first.patients)[0]
    pet = first.patients[pid].pet
    img = sitk.ReadImage(str(pet))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[1, 2, 3] = np.nan
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(pet))
    third = cohort_mod.load_cohort(cohort_copy, check_images=True)
    assert calls[n:] == [pid]  # only the edited patient is decoded again
    assert any(p.patient_id == pid and p.severity == "error" and "NaN" in p.message for p in third.problems)
    os.chmod(first.patients[sorted(first.patients)[1]].ct, 0o600)  # permission bits are part of the key
    cohort_mod.load_cohort(cohort_copy, check_images=True)
    assert calls[n + 1:] == [sorted(first.patients)[1]]


def test_memo_is_shared_with_other_processes_and_can_be_turned_off(cohort_copy, tmp_path, monkeypatch):
    memo = tmp_path / "memo"
    code = ("import sys, hnc_core.cohort as c; n = []; real = c._check_images_now; "
            "c._check_images_now = lambda r, s: (n.append(1), real(r, s)); "
            "c.load_cohort(sys.argv[1], check_images=True); print(len(n))")
    run = lambda value: int(subprocess.run([sys.executable, "-c", code, str(cohort_copy)], check=True, text=True,
                                           capture_output=True, env={**os.environ, "HNC_PETCT_CHECK_CACHE": value}
                                           ).stdout.strip())
    first = run(str(memo))
    assert first >= 4 and run(str(memo)) == 0  # a second process reads the findings back
    assert run("off") == first  # disabled: every process checks
    _fresh_memo(monkeypatch, "off")
    assert check_memo.memo_dir() is None
