"""The one per-patient failure-record shape and the one cache-key policy (hnc_core.failures / .identity)."""

from __future__ import annotations

import os

import pytest

from hnc_core.failures import by_patient, failure, from_exception
from hnc_core.identity import cache_key, file_identity, files_identity

KEYS = {"PatientID", "file", "error"}


def test_failure_record_shape_and_view():
    recs = [failure("P1", None, "no row"), failure("P2", "/d/P2/P2__CT.nii.gz", "truncated"), failure("P1", "", "x")]
    assert all(set(r) == KEYS for r in recs)
    assert recs[0]["file"] is None and recs[2]["file"] is None  # "" and None mean "no single file"
    assert by_patient(recs) == {"P1": "no row", "P2": "truncated"}  # first record of a patient wins


def test_from_exception_names_the_file_of_the_root_cause(tmp_path):
    ct, pet = tmp_path / "P7__CT.nii.gz", tmp_path / "P7__PT.nii.gz"
    try:
        try:
            raise OSError(f"ERROR: gzip stream truncated in {pet.name}")
        except OSError as inner:
            raise RuntimeError("applying transform <LoadImaged object at 0x7f>") from inner
    except RuntimeError as exc:
        rec = from_exception("P7", exc, (ct, pet), what="preprocessing failed")
    assert set(rec) == KEYS and rec["file"] == str(pet)
    assert rec["error"] == f"preprocessing failed: gzip stream truncated in {pet.name}"
    rec = from_exception("P7", ValueError("bad spacing"), (ct, pet))
    assert rec["file"] == f"{ct} / {pet}" and rec["error"] == "bad spacing"  # no file named: all of them


def test_cache_key_changes_with_any_input(tmp_path):
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    a.write_bytes(b"A" * 10)
    b.write_bytes(b"B" * 10)
    k = cache_key((a, b), {"size": 32}, "v1")
    assert k == cache_key((a, b), {"size": 32}, "v1")  # stable while nothing changes
    assert k != cache_key((a, b), {"size": 48}, "v1")
    assert k != cache_key((a, b), {"size": 32}, "v2")
    assert k != cache_key((b, a), {"size": 32}, "v1")
    st = a.stat()
    tmp = tmp_path / "a.tmp"  # atomic replace with the same size and the same mtime: the inode tells
    tmp.write_bytes(b"C" * 10)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, a)
    assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    assert cache_key((a, b), {"size": 32}, "v1") != k


def test_folder_identity_uses_the_same_file_identity(tmp_path):
    (tmp_path / "P1").mkdir()
    f = tmp_path / "P1" / "P1__CT.nii.gz"
    f.write_bytes(b"x")
    before = files_identity(tmp_path)
    ident = file_identity(f)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1))
    assert file_identity(f) != ident and files_identity(tmp_path) != before
    (tmp_path / ".cache").mkdir()  # hidden caches beside the data do not count
    (tmp_path / ".cache" / "x").write_bytes(b"y")
    after = files_identity(tmp_path)
    assert files_identity(tmp_path) == after
    with pytest.raises(FileNotFoundError):
        file_identity(tmp_path / "missing.nii.gz")


def test_outcome_caches_follow_the_one_policy(tmp_path):
    """The RFS preprocessing cache and the radiomics cache key on hnc_core.identity.cache_key: touching a file
    re-keys both (no content hash in one and stat in the other)."""
    from survival_head.radiomics.cohort import cache_key as radiomics_key
    from survival_head.rfs.data import _cache_key as rfs_key

    ct, pet, mask = (tmp_path / n for n in ("ct.nii.gz", "pet.nii.gz", "mask.nii.gz"))
    for p in (ct, pet, mask):
        p.write_bytes(b"0")
    r0, m0 = rfs_key("P1", ct, pet, {"image_size": 32}), radiomics_key({"a": 1}, str(ct), str(mask), True, 8.0)
    os.utime(ct, ns=(ct.stat().st_atime_ns, ct.stat().st_mtime_ns + 1000))
    assert rfs_key("P1", ct, pet, {"image_size": 32}) != r0
    assert radiomics_key({"a": 1}, str(ct), str(mask), True, 8.0) != m0
    assert rfs_key("P2", ct, pet, {"image_size": 32}) != rfs_key("P1", ct, pet, {"image_size": 32})
