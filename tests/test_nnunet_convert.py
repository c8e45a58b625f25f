"""HECKTOR-layout cohort -> nnU-Net raw dataset (nnunet_plugins.convert) on the tiny synthetic cohort."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_plugins.convert import ConversionError, convert_cohort

DS = "Dataset501_HECKTOR"


def _files(root):
    return {p.relative_to(root): (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_layout_and_unlabelled_patient_goes_to_imagests(cohort_copy, tmp_path):
    pids = sorted(p.name for p in cohort_copy.iterdir() if p.is_dir())
    (cohort_copy / pids[-1] / f"{pids[-1]}.nii.gz").unlink()
    out = convert_cohort(cohort_copy, 501, tmp_path / "raw")
    assert out == tmp_path / "raw" / DS
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT", "1": "PET"} and ds["file_ending"] == ".nii.gz"
    assert ds["labels"] == {"background": 0, "GTVp": 1, "GTVn": 2} and ds["numTraining"] == len(pids) - 1
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [f"{p}.nii.gz" for p in pids[:-1]]
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == sorted(
        f"{p}_{c}.nii.gz" for p in pids[:-1] for c in ("0000", "0001"))
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [f"{pids[-1]}_0000.nii.gz",
                                                                     f"{pids[-1]}_0001.nii.gz"]
    lab = sitk.ReadImage(str(out / "labelsTr" / f"{pids[0]}.nii.gz"))
    assert lab.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(lab)).tolist()) <= {0, 1, 2}


def test_pet_is_resampled_onto_the_ct_grid(cohort_copy, tmp_path):
    out = convert_cohort(cohort_copy, 501, tmp_path / "raw")
    pid = sorted(p.name for p in cohort_copy.iterdir() if p.is_dir())[0]
    ct = sitk.ReadImage(str(out / "imagesTr" / f"{pid}_0000.nii.gz"))
    pet = sitk.ReadImage(str(out / "imagesTr" / f"{pid}_0001.nii.gz"))
    src_pet = sitk.ReadImage(str(cohort_copy / pid / f"{pid}__PT.nii.gz"), sitk.sitkFloat32)
    assert src_pet.GetSize() != ct.GetSize()  # the synthetic PET really is on another grid
    assert pet.GetSize() == ct.GetSize()
    np.testing.assert_allclose(pet.GetSpacing(), ct.GetSpacing())
    np.testing.assert_allclose(pet.GetOrigin(), ct.GetOrigin())
    np.testing.assert_allclose(pet.GetDirection(), ct.GetDirection())
    # the value at the PET hot spot's physical point matches linear interpolation of the source PET
    arr = sitk.GetArrayFromImage(pet)
    z, y, x = np.unravel_index(int(np.argmax(arr)), arr.shape)
    point = ct.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
    ref = sitk.Image([1, 1, 1], sitk.sitkFloat32)
    ref.SetOrigin(point)
    ref.SetDirection(ct.GetDirection())
    expected = sitk.Resample(src_pet, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)[0, 0, 0]
    assert arr[z, y, x] == pytest.approx(expected, rel=1e-4)
    assert arr.max() > 2 * np.median(arr)  # not a flat resampling artefact


def test_rerun_changes_nothing(cohort_copy, tmp_path):
    out = convert_cohort(cohort_copy, 501, tmp_path / "raw")
    before = _files(out)
    assert convert_cohort(cohort_copy, 501, tmp_path / "raw") == out
    assert _files(out) == before


def test_refuses_to_overwrite_a_different_dataset(cohort_copy, tmp_path):
    convert_cohort(cohort_copy, 501, tmp_path / "raw")
    other = tmp_path / "other"
    shutil.copytree(cohort_copy, other)
    shutil.rmtree(other / sorted(p.name for p in other.iterdir() if p.is_dir())[0])
    with pytest.raises(ConversionError, match="already exists with different content"):
        convert_cohort(other, 501, tmp_path / "raw")
    (tmp_path / "raw" / "Dataset502_Other").mkdir()
    with pytest.raises(ConversionError, match="already used by Dataset502_Other"):
        convert_cohort(cohort_copy, 502, tmp_path / "raw")


def test_bad_patient_is_skipped_with_patient_and_file_named(cohort_copy, tmp_path, caplog):
    pids = sorted(p.name for p in cohort_copy.iterdir() if p.is_dir())
    bad_ct = cohort_copy / pids[1] / f"{pids[1]}__CT.nii.gz"
    bad_ct.write_bytes(b"not a nifti file")
    with caplog.at_level(logging.WARNING, logger="nnunet_plugins.convert"):
        out = convert_cohort(cohort_copy, 501, tmp_path / "raw")
    msgs = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(msgs) == 1 and pids[1] in msgs[0] and str(bad_ct) in msgs[0]
    written = {p.name.rsplit("_", 1)[0] for p in out.glob("images*/*.nii.gz")}
    assert pids[1] not in written and len(written) == len(pids) - 1
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == len(pids) - 1


def test_missing_raw_folder_is_a_clear_error(cohort_copy, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(ConversionError, match="nnUNet_raw"):
        convert_cohort(cohort_copy, 501, None)
