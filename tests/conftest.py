"""Shared fixtures: a tiny synthetic cohort generated once per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# the voxel-check memo of this test session (and of the CLIs it starts) lives in a fresh folder, not ~/.cache
os.environ.setdefault("HNC_PETCT_CHECK_CACHE", tempfile.mkdtemp(prefix="hnc-petct-checks-"))


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """Four synthetic patients (small grid), generated once; treat as read-only."""
    from hnc_core.synth import generate_cohort

    out = tmp_path_factory.mktemp("tiny_cohort")
    generate_cohort(out, n=4, seed=3, progress=False)
    return out


@pytest.fixture()
def cohort_copy(tiny_cohort, tmp_path) -> Path:
    """A writable copy of the tiny cohort for tests that corrupt it."""
    dst = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, dst)
    return dst


# the session's one tiny trained HecMamba nnU-Net fold (real nnU-Net CLIs), shared by every test that needs it
from nnunet_fold import nnunet_pipeline  # noqa: E402,F401
