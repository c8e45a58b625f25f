"""HECKTOR-layout cohort -> nnU-Net v2 raw dataset (CT ``_0000``, PET on the CT grid ``_0001``, labels)."""

from __future__ import annotations

import json
import logging
import os
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
    images but no usable label go to imagesTs. Idempotent: a re-run on the same cohort changes nothing;
    a different existing dataset at the target is refused (:class:`ConversionError`).
    """
    from hnc_core.cohort import load_cohort

    out = dataset_dir(nnunet_raw, dataset_id, name)
    cohort = load_cohort(cohort_dir, collect=True, check_images=True)
    for p in cohort.problems:
        if p.severity == "error" and p.affects in ("images", "label"):
            log.warning("skipping %s for %s: %s (%s)", p.patient_id, p.affects, p.message, p.file)
    train = cohort.usable_ids("segmentation")
    test = [pid for pid in cohort.usable_ids("images") if pid not in train]
    if not train and not test:
        raise ConversionError(f"no usable patient in {cohort_dir}")
    manifest = _manifest(cohort, train, test)
    if out.exists() and any(out.iterdir()):
        old = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).exists() else None
        if old == manifest:
            log.info("%s is up to date (%d training, %d test cases); nothing to do", out, len(train), len(test))
            return out
        raise ConversionError(f"{out} already exists with different content (other cohort, patients or files); "
                              "remove it or choose another --dataset-id")
    from tqdm.auto import tqdm

    cases = [(pid, True) for pid in train] + [(pid, False) for pid in test]
    for pid, with_label in tqdm(cases, desc="converting to nnU-Net", unit="patient", disable=not progress):
        _write_case(cohort.patients[pid], out, with_label)
    write_json_atomic(out / "dataset.json", {
        "channel_names": {"0": "CT", "1": "PET"},  # 'CT' -> nnU-Net CT normalisation, 'PET' -> z-score
        "labels": LABELS, "numTraining": len(train), "file_ending": ".nii.gz",
        "name": name, "description": f"HECKTOR-layout cohort {cohort.root} converted by hnc-petct"})
    write_json_atomic(out / MANIFEST, manifest)
    log.info("wrote %s: %d training, %d test cases", out, len(train), len(test))
    return out
