"""Radiomics: feature count and names of the shipped config, cache, per-patient failures, pool and Dask paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from survival_head.radiomics import expected_feature_count, extract_cohort, load_params

DERIVED = ["log-sigma-1-0-mm-3D", "log-sigma-2-0-mm-3D", "log-sigma-3-0-mm-3D", "square", "squareroot",
           "logarithm", "exponential"] + [f"wavelet-{a}{b}{c}" for a in "LH" for b in "LH" for c in "LH"]


def shared_cohort(factory) -> Path:
    """16-patient synthetic cohort (7 with DM), generated once per session (also used by the DM tests)."""
    from hnc_core.synth import generate_cohort

    root = factory.getbasetemp() / "dm_shared_cohort"
    if not (root / "ground_truth.csv").is_file():
        generate_cohort(root, n=16, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return shared_cohort(tmp_path_factory)


@pytest.fixture(scope="module")
def small_ids(cohort):
    """The two patients with the smallest tumours (keeps the full 1,502-feature run short)."""
    vols = {}
    for f in sorted(cohort.glob("*/*.nii.gz")):
        if "__" not in f.name:
            vols[f.parent.name] = int((sitk.GetArrayFromImage(sitk.ReadImage(str(f))) > 0).sum())
    return sorted(vols, key=vols.get)[:2]


@pytest.fixture(scope="module")
def full_features(cohort, small_ids, tmp_path_factory):
    cache = tmp_path_factory.mktemp("rad_full_cache")
    return extract_cohort(cohort, cache, workers=2, ids=small_ids, progress=False), cache


def test_shipped_config_counts_1502_per_region():
    assert expected_feature_count(load_params()) == 1502
    assert expected_feature_count(load_params("fast")) == 107


def test_full_extraction_feature_count_and_names(full_features, small_ids):
    df, _ = full_features
    assert list(df.index) == sorted(small_ids)
    for region in ("tumour", "peritumoral"):
        cols = [c for c in df.columns if c.startswith(region + "__")]
        assert len(cols) == 1502
        kinds = {c.split("__")[1].split("_")[0] for c in cols}
        assert kinds == {"original", *DERIVED}
        assert sum(c.split("__")[1].startswith("original_") for c in cols) == 107
        for d in DERIVED:
            assert sum(c.split("__")[1].startswith(d + "_") for c in cols) == 93
        assert f"{region}__original_shape_VoxelVolume" in cols
        assert not any("shape" in c for c in cols if not c.split("__")[1].startswith("original_"))
    assert np.isfinite(df.to_numpy(float)).mean() > 0.99
    # the ring is larger than the tumour it surrounds
    assert (df["peritumoral__original_shape_VoxelVolume"] > df["tumour__original_shape_VoxelVolume"]).all()


def test_cache_skips_done_patients_and_notices_changed_masks(full_features, cohort, small_ids, tmp_path):
    df, cache = full_features
    f = cache / f"{small_ids[0]}.json"
    before = f.stat().st_mtime_ns
    again = extract_cohort(cohort, cache, workers=1, ids=small_ids, progress=False)
    assert f.stat().st_mtime_ns == before
    assert np.allclose(again.to_numpy(float), df.to_numpy(float), equal_nan=True)
    # a different ring width is a different cache key: recomputed (fast params keep this cheap)
    fast8 = extract_cohort(cohort, tmp_path, ids=small_ids[:1], params="fast", progress=False)
    fast4 = extract_cohort(cohort, tmp_path, ids=small_ids[:1], params="fast", ring_mm=4.0, progress=False)
    assert fast4["peritumoral__original_shape_VoxelVolume"].iloc[0] < fast8["peritumoral__original_shape_VoxelVolume"].iloc[0]
    assert fast4["tumour__original_shape_VoxelVolume"].iloc[0] == fast8["tumour__original_shape_VoxelVolume"].iloc[0]


def test_failure_on_one_patient_is_reported_and_the_rest_continue(cohort, small_ids, tmp_path):
    bad_root = tmp_path / "cohort"
    bad_root.mkdir()
    shutil.copy(cohort / "HECKTOR_2025_Training_Task_2.csv", bad_root)
    for pid in small_ids:
        shutil.copytree(cohort / pid, bad_root / pid)
    bad, good = small_ids
    lab = sitk.ReadImage(str(bad_root / bad / f"{bad}.nii.gz"))
    empty = sitk.Image(lab.GetSize(), lab.GetPixelID())
    empty.CopyInformation(lab)
    sitk.WriteImage(empty, str(bad_root / bad / f"{bad}.nii.gz"))
    df = extract_cohort(bad_root, tmp_path / "cache", workers=1, params="fast", progress=False)
    assert list(df.index) == [good]
    assert bad in df.attrs["errors"] and bad in df.attrs["errors"][bad]
    assert "no GTVp or GTVn voxels" in df.attrs["errors"][bad]
    (rec,) = [f for f in df.attrs["failures"] if f["PatientID"] == bad]  # the one failure-record shape, files named
    assert set(rec) == {"PatientID", "file", "error"} and rec["PatientID"] == bad and f"{bad}.nii.gz" in rec["file"]
    assert not (tmp_path / "cache" / f"{bad}.json").exists()


def test_dask_local_cluster_matches_process_pool(cohort, small_ids, tmp_path):
    from distributed import LocalCluster

    pool = extract_cohort(cohort, tmp_path / "pool", workers=2, ids=small_ids, params="fast", progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dask = extract_cohort(cohort, tmp_path / "dask", scheduler=cluster.scheduler_address, ids=small_ids,
                              params="fast", progress=False)
    assert list(dask.index) == list(pool.index) == sorted(small_ids)
    assert dask.shape[1] == 2 * 107
    assert np.allclose(dask[pool.columns].to_numpy(float), pool.to_numpy(float), equal_nan=True)
    saved = json.loads((tmp_path / "dask" / f"{small_ids[0]}.json").read_text())
    assert len(saved["features"]) == 214
