"""A small MONAI Deploy application serving one of the project's bundles with the SDK's stock operator.

Graph: ``PatientSource`` (one patient per tick, a ``CountCondition`` stops it) -> the stock
``MonaiBundleInferenceOperator`` (``IOMapping`` for every ``network_data_format`` input and output, no
subclass) -> ``ResultSink``. The operator loads ``models/model.ts`` (with the ``metadata.json`` and
``inference.json`` embedded by training / ``ckpt_export``, as inside a MAP), runs the bundle's
``preprocessing`` (its ``LoadImage*`` transforms removed), the model and ``postprocessing``.

Run it under a large stack, as holoscan asks (it may crash below 8 MB)::

    ulimit -s 32768
    python -m hnc_petct.deploy.bundle_app rfs --model BUNDLE/models/model.ts --cohort COHORT --out preds.json
    python -m hnc_petct.deploy.bundle_app seg --model BUNDLE --cohort NNUNET_IMAGES --out LABELS_DIR

For the segmentation bundle ``--model`` is the bundle folder: the stock operator reads its ``configs/`` and loads
``models/model.ts`` (nnU-Net's whole-case inference as TorchScript, written by the export), or without it
builds ``network`` from ``inference.json`` and loads ``models/model.pt`` (strict).

Inputs handed to the operator (what a DICOM front end would produce after series selection):

* ``image``: SDK :class:`~monai.deploy.core.Image`, (C, X, Y, Z) float32, channels CT (HU) and PET (SUV,
  resampled onto the CT grid), with its LPS affine;
* RFS ``clinical``: raw canonical clinical vector (torch.Tensor, see ``survival_head.rfs.export``).

The segmentation bundle's ``pred`` comes back as an SDK ``Image`` (D, H, W) uint8 label map on the CT grid.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- inputs


def sitk_to_deploy_image(channels: list, reference) -> Any:
    """SimpleITK images on one grid -> SDK ``Image`` (C, X, Y, Z) float32 with spacing and LPS affine."""
    import SimpleITK as sitk
    from monai.deploy.core import Image

    arr = np.stack([sitk.GetArrayFromImage(c).astype(np.float32).transpose(2, 1, 0) for c in channels])
    spacing = np.asarray(reference.GetSpacing(), float)
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(reference.GetDirection(), float).reshape(3, 3) * spacing
    affine[:3, 3] = reference.GetOrigin()
    return Image(arr, metadata={"spacing": spacing, "original_affine": affine.copy(), "affine": affine,
                                "space": "LPS", "original_channel_dim": 0})


def pet_on_ct(ct, pet):
    """PET (SUV) resampled onto the CT grid, linear, 0 outside the PET field of view."""
    import SimpleITK as sitk

    return sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def rfs_inputs(cohort_dir: str | Path) -> list[tuple[str, dict]]:
    """``(PatientID, {"image", "clinical"})`` for every patient with CT and PET in a HECKTOR-layout folder."""
    import SimpleITK as sitk
    import torch

    from hnc_core.cohort import load_cohort
    from survival_head.rfs.export import raw_clinical_vector

    cohort = load_cohort(cohort_dir, check_images=False)
    out = []
    for pid in cohort.usable_ids("images"):
        rec = cohort.patients[pid]
        ct = sitk.ReadImage(str(rec.ct), sitk.sitkFloat32)
        pet = pet_on_ct(ct, sitk.ReadImage(str(rec.pet), sitk.sitkFloat32))
        row = cohort.clinical.loc[pid].to_dict() if pid in cohort.clinical.index else None
        out.append((pid, {"image": sitk_to_deploy_image([ct, pet], ct),
                          "clinical": torch.from_numpy(raw_clinical_vector(row))}))
    return out


def dm_inputs(cohort_dir: str | Path, mask_dir: str | Path | None = None) -> list[tuple[str, dict]]:
    """``(PatientID, {"image", "radiomics", "clinical"})`` for every patient with a CT and a tumour mask:
    ``image`` = CT + tumour label on the CT grid; ``radiomics`` empty (the bundle's preprocessing extracts the
    selected features with pyradiomics); ``clinical`` = raw canonical DM vector."""
    import SimpleITK as sitk
    import torch

    from hnc_core.cohort import load_cohort
    from survival_head.dm.export import raw_clinical_vector
    from survival_head.dm.regions import RegionError, mask_file

    cohort = load_cohort(cohort_dir, check_images=False)
    out = []
    for pid in sorted(p for p, r in cohort.patients.items() if r.ct):
        try:
            mask = mask_file(pid, cohort.patients[pid].label, mask_dir)
        except RegionError as exc:
            log.error("skipped %s: %s", pid, exc)
            continue
        ct = sitk.ReadImage(str(cohort.patients[pid].ct), sitk.sitkFloat32)
        lab = sitk.ReadImage(str(mask), sitk.sitkFloat32)
        row = cohort.clinical.loc[pid].to_dict() if pid in cohort.clinical.index else None
        out.append((pid, {"image": sitk_to_deploy_image([ct, lab], ct), "radiomics": torch.zeros(0, dtype=torch.float64),
                          "clinical": torch.from_numpy(raw_clinical_vector(row))}))
    return out


def seg_inputs(images_dir: str | Path) -> list[tuple[str, dict]]:
    """``(case, {"image"})`` for every case of an nnU-Net image folder (``CASE_0000`` CT, ``CASE_0001`` PET on
    the CT grid, as ``hnc-petct nnunet-convert`` writes them), with the CT file as the grid reference."""
    import SimpleITK as sitk

    out = []
    for ct_file in sorted(Path(images_dir).glob("*_0000.nii.gz")):
        case = ct_file.name[: -len("_0000.nii.gz")]
        pet_file = ct_file.with_name(f"{case}_0001.nii.gz")
        if not pet_file.is_file():
            log.error("skipped %s: %s missing", case, pet_file.name)
            continue
        ct = sitk.ReadImage(str(ct_file), sitk.sitkFloat32)
        pet = sitk.ReadImage(str(pet_file), sitk.sitkFloat32)
        out.append((case, {"image": sitk_to_deploy_image([ct, pet], ct), "_reference": str(ct_file)}))
    return out


def write_label_image(pred, reference: str | Path, path: str | Path) -> None:
    """The operator's label ``Image`` (D, H, W) -> NIfTI on the grid of ``reference`` (atomic)."""
    import SimpleITK as sitk

    from hnc_core.io import write_image_atomic

    ref = sitk.ReadImage(str(reference))
    img = sitk.GetImageFromArray(np.asarray(pred.asnumpy() if hasattr(pred, "asnumpy") else pred, np.uint8))
    img.CopyInformation(ref)
    write_image_atomic(img, path)


# ------------------------------------------------------------------------------------- operators


def _operators():
    from monai.deploy.core import Operator, OperatorSpec

    class PatientSource(Operator):
        """Emits the inputs of one patient per tick (give it ``CountCondition(n_patients)``)."""

        def __init__(self, fragment, *args, patients: list[dict], **kwargs):
            self.patients, self.index = patients, 0
            self.names = list(patients[0]) if patients else []
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec: OperatorSpec):
            for name in self.names:
                spec.output(name)

        def compute(self, op_input, op_output, context):
            item = self.patients[self.index]
            self.index += 1
            for name in self.names:
                op_output.emit(item[name], name)

    class ResultSink(Operator):
        """Receives the bundle's outputs, one patient per tick, in order."""

        def __init__(self, fragment, *args, names: list[str], results: list, **kwargs):
            self.names, self.results = names, results
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec: OperatorSpec):
            for name in self.names:
                spec.input(name)

        def compute(self, op_input, op_output, context):
            self.results.append({n: op_input.receive(n) for n in self.names})

    return PatientSource, ResultSink


def _io_type(conf: dict):
    import torch
    from monai.deploy.core import Image

    return Image if conf.get("type") == "image" else (np.ndarray if conf.get("type") in ("series", "tuples",
                                                                                          "probabilities") else torch.Tensor)


def serve(model_path: str | Path, patients: list[dict]) -> list[dict]:
    """Run the app on ``patients`` (dicts keyed by the bundle's input names); one output dict per patient.

    ``model_path``: a bundle's ``models/model.ts`` (metadata and inference config embedded), or a bundle folder
    (the stock operator then reads ``configs/`` and loads ``models/model.ts``, else ``network`` +
    ``models/model.pt``).
    """
    from monai.deploy.conditions import CountCondition
    from monai.deploy.core import AppContext, Application, IOType
    from monai.deploy.operators.monai_bundle_inference_operator import IOMapping, MonaiBundleInferenceOperator

    import torch

    model_path = Path(model_path).resolve()
    if model_path.is_dir():
        meta = json.loads((model_path / "configs" / "metadata.json").read_text())
    else:
        with __import__("zipfile").ZipFile(model_path) as z:
            meta_name = next(n for n in z.namelist() if n.endswith("extra/metadata.json"))
            meta = json.loads(z.read(meta_name))
    fmt = meta["network_data_format"]
    inputs, outputs = list(fmt["inputs"]), list(fmt["outputs"])
    PatientSource, ResultSink = _operators()
    results: list = []

    class BundleApp(Application):
        def compose(self):
            ctx = AppContext({"model": str(model_path)})
            if model_path.is_dir():
                ctx.models = None  # a bundle folder, not a model repository: the operator reads it itself
            src = PatientSource(self, CountCondition(self, len(patients)), patients=patients, name="patients")
            infer = MonaiBundleInferenceOperator(
                self, app_context=ctx, bundle_path=str(model_path),
                input_mapping=[IOMapping(n, _io_type(fmt["inputs"][n]), IOType.IN_MEMORY) for n in inputs],
                output_mapping=[IOMapping(n, _io_type(fmt["outputs"][n]), IOType.IN_MEMORY) for n in outputs],
                name="bundle")
            sink = ResultSink(self, names=outputs, results=results, name="results")
            self.add_flow(src, infer, {(n, n) for n in inputs})
            self.add_flow(infer, sink, {(n, n) for n in outputs})

    if patients:
        with torch.no_grad():
            BundleApp().run()
    if len(results) != len(patients):
        raise RuntimeError(f"MONAI Deploy app returned {len(results)} results for {len(patients)} patients")
    return results


def _scalar(pred) -> float:
    """The operator's ``pred`` (array for ``series``; dict with ``probabilities`` for ``probabilities``) -> float."""
    if isinstance(pred, dict):
        pred = pred["probabilities"]
    return float(np.asarray(pred).reshape(-1)[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", choices=["rfs", "dm", "seg"])
    p.add_argument("--model", required=True, help="BUNDLE/models/model.ts (seg: the bundle folder)")
    p.add_argument("--cohort", required=True, help="HECKTOR-layout folder (seg: nnU-Net image folder)")
    p.add_argument("--out", required=True, help="JSON file: list of {PatientID, Prediction} (seg: a folder "
                                                "for CASE.nii.gz label maps)")
    a = p.parse_args(argv)
    from hnc_core.io import write_json_atomic

    t0 = time.perf_counter()
    items = {"rfs": rfs_inputs, "dm": dm_inputs, "seg": seg_inputs}[a.bundle](a.cohort)
    t1 = time.perf_counter()
    res = serve(a.model, [{k: v for k, v in x.items() if not k.startswith("_")} for _, x in items])
    t2 = time.perf_counter()
    if a.bundle == "seg":
        for (case, x), r in zip(items, res):
            write_label_image(r["pred"], x["_reference"], Path(a.out) / f"{case}.nii.gz")
    else:
        preds = [{"PatientID": pid, "Prediction": _scalar(r["pred"])} for (pid, _), r in zip(items, res)]
        write_json_atomic(a.out, preds)
    n = max(len(items), 1)
    print(json.dumps({"patients": len(items), "read_s": round(t1 - t0, 3), "serve_s": round(t2 - t1, 3),
                      "per_patient_s": round((t2 - t0) / n, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
