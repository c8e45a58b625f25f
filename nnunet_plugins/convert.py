"""HECKTOR-layout cohort -> nnU-Net v2 raw dataset (CT ``_0000``, PET on the CT grid ``_0001``, labels)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from hnc_core import schema
from hnc_core.io import write_image_atomic, write_json_atomic

log = logging.getLogger(__name__)
LABELS = {name: value for value, name in schema.LABELS.items()}  # nnU-Net dataset.json: name -> value
MANIFEST = "hnc_conversion.json"


class ConversionError(RuntimeError):
    """The target dataset cannot be written (exists with other content, bad arguments)."""


def dataset_dir(nnunet_raw: str | os.PathLike | None, dataset_id: int, name: str = "HECKTOR") -> Path:
    """``nnUNet_raw/DatasetXXX_name``; refuses when another dataset already uses the ID."""
    raw = nnunet_raw or os.environ.get("nnUNet_raw")
    if not raw:
        raise ConversionError("no nnUNet_raw folder: pass --nnunet-raw or set the nnUNet_raw environment variable")
    if not 1 <= int(dataset_id) <= 999:
        raise ConversionError(f"dataset id must be in 1..999, got {dataset_id}")
    raw = Path(raw)
    target = raw / f"Dataset{int(dataset_id):03d}_{name}"
    others = [p.name for p in raw.glob(f"Dataset{int(dataset_id):03d}_*") if p != target] if raw.exists() else []
    if others:
        raise ConversionError(f"dataset id {dataset_id} is already used by {others[0]} in {raw}")
    return target


def _manifest(cohort, train: list[str], test: list[str]) -> dict:
    def stamp(p):
        st = Path(p).stat()
        return [str(Path(p).resolve()), st.st_size, int(st.st_mtime)]

    files = {pid: [stamp(f) for f in (cohort.patients[pid].ct, cohort.patients[pid].pet, cohort.patients[pid].label)
                   if f is not None] for pid in train + test}
    return {"generator": "nnunet_plugins.convert", "cohort": str(Path(cohort.root).resolve()),
            "train": train, "test": test, "files": files}


def staging_dir(target: Path) -> Path:
    """Where a conversion is written before it is moved into place (same file system, hidden name)."""
    return target.parent / f".{target.name}.partial"


def _write_case(rec, out: Path, with_label: bool) -> None:
    """CT as _0000, PET resampled (linear) onto the CT grid as _0001, label (uint8) on the CT grid."""
    import SimpleITK as sitk

    images, labels = ("imagesTr", "labelsTr") if with_label else ("imagesTs", None)
    pid = rec.patient_id
    ct = sitk.ReadImage(str(rec.ct))
    pet = sitk.ReadImage(str(rec.pet), sitk.sitkFloat32)
    pet_on_ct = sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    write_image_atomic(ct, out / images / f"{pid}_0000.nii.gz")
    write_image_atomic(pet_on_ct, out / images / f"{pid}_0001.nii.gz")
    if labels:
        lab = sitk.ReadImage(str(rec.label))
        lab = sitk.Resample(lab, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        write_image_atomic(lab, out / labels / f"{pid}.nii.gz")


def convert_cohort(cohort_dir: str | os.PathLike, dataset_id: int = 501,
                   nnunet_raw: str | os.PathLike | None = None, name: str = "HECKTOR", progress: bool = False) -> Path:
    """Convert a HECKTOR-layout cohort; returns the dataset folder.

    Patients failing the data-layer checks for images are skipped (logged with the reason); those with
    images but no usable label go to imagesTs. The dataset is written into a staging folder
    (:func:`staging_dir`) and moved into place only when complete, so an interrupted conversion never
    leaves a half-written ``DatasetXXX``; its leftover staging folder is removed and redone on the next run.
    Idempotent: a re-run on the same cohort changes nothing; a different existing dataset at the target is
    refused (:class:`ConversionError`), as is a target inside the cohort folder or an unwritable nnUNet_raw.
    """
    from hnc_core.cohort import load_cohort
    from hnc_core.guards import OutputPathError, check_output_dir

    out = dataset_dir(nnunet_raw, dataset_id, name)
    try:
        check_output_dir(out.parent, protected_dirs=[cohort_dir], what="nnUNet_raw folder")
    except OutputPathError as exc:
        raise ConversionError(str(exc)) from None
    cohort = load_cohort(cohort_dir, collect=True, check_images=True)
    for p in cohort.problems:
        if p.affects in ("images", "label"):
            what = "skipping" if p.severity == "error" else "warning for"
            log.warning("%s %s (%s): %s (%s)", what, p.patient_id, p.affects, p.message, p.file)
    train = cohort.usable_ids("segmentation")
    test = [pid for pid in cohort.usable_ids("images") if pid not in train]
    if not train and not test:
        raise ConversionError(f"no usable patient in {cohort_dir}")
    manifest = _manifest(cohort, train, test)
    stage = staging_dir(out)
    if stage.exists():
        log.warning("removing the unfinished conversion %s left by an interrupted run; converting again", stage)
        shutil.rmtree(stage)
    if out.exists() and any(out.iterdir()):
        old = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).exists() else None
        if old == manifest:
            log.info("%s is up to date (%d training, %d test cases); nothing to do", out, len(train), len(test))
            return out
        if old is None and not (out / "dataset.json").exists() and _only_our_files(out):
            log.warning("%s holds a half-written conversion (no %s, no dataset.json); converting again",
                        out, MANIFEST)
            shutil.rmtree(out)
        else:
            raise ConversionError(f"{out} already exists with different content (other cohort, patients or "
                                  "files); remove it or choose another --dataset-id")
    from tqdm.auto import tqdm

    cases = [(pid, True) for pid in train] + [(pid, False) for pid in test]
    for pid, with_label in tqdm(cases, desc="converting to nnU-Net", unit="patient", disable=not progress):
        _write_case(cohort.patients[pid], stage, with_label)
    write_json_atomic(stage / "dataset.json", {
        "channel_names": {"0": "CT", "1": "PET"},  # 'CT' -> nnU-Net CT normalisation, 'PET' -> z-score
        "labels": LABELS, "numTraining": len(train), "file_ending": ".nii.gz",
        "name": name, "description": f"HECKTOR-layout cohort {cohort.root} converted by hnc-petct"})
    write_json_atomic(stage / MANIFEST, manifest)
    if out.exists():  # an empty folder (e.g. made by hand): replace it
        out.rmdir()
    os.replace(stage, out)
    log.info("wrote %s: %d training, %d test cases", out, len(train), len(test))
    return out


def _only_our_files(out: Path) -> bool:
    """True when ``out`` holds nothing but the folders and NIfTI files a conversion writes."""
    for p in out.rglob("*"):
        rel = p.relative_to(out).parts
        if rel[0] not in ("imagesTr", "imagesTs", "labelsTr"):
            return False
        if p.is_file() and not p.name.endswith(".nii.gz"):
            return False
    return True
