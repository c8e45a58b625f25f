"""Our operators around the stock bundle operators: model inputs the bundles declare, and the report.

* :class:`RfsClinicalOperator`: clinical record -> the RFS bundle's raw canonical clinical vector (torch).
* :class:`DmInputsOperator`: CT + predicted label + record -> the DM bundle's image, radiomics, clinical.
* :class:`ReportOperator`: everything -> ``report.json`` (staging) and the text of the DICOM SR.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np
import torch
from monai.deploy.core import Image

from hnc_core import schema
from hnc_core.io import write_json_atomic

from .bundles import BundleInfo
from .errors import StudyInputError
from .ports import PortsOperator

log = logging.getLogger(__name__)

LABELS = {1: "GTVp", 2: "GTVn"}


def rfs_clinical_set(bundle: BundleInfo) -> str:
    """The bundle's clinical set, from the width its ``clinical`` input declares (fixed at training)."""
    from survival_head.rfs.clinical import CLINICAL_SETS, n_clinical_for

    width = int(bundle.inputs["clinical"]["num_channels"])
    hits = [s for s in CLINICAL_SETS if n_clinical_for(s) == width]
    if not hits:
        raise ValueError(f"{bundle.path}: clinical input of width {width} matches no clinical set "
                         f"({ {s: n_clinical_for(s) for s in CLINICAL_SETS} })")
    return hits[0]


class RfsClinicalOperator(PortsOperator):
    """In: ``clinical`` (record). Out: ``clinical_vector`` (F,) float32 tensor, Age in years (NaN = missing) then
    one-hot blocks with ``Unknown``; the fold encoders inside ``model.ts`` impute and standardise."""

    INPUTS = ("clinical",)
    OUTPUTS = ("clinical_vector",)

    def __init__(self, fragment, *args, clinical_set: str, **kwargs):
        self.clinical_set = clinical_set
        super().__init__(fragment, *args, **kwargs)

    def compute(self, op_input, op_output, context):
        from survival_head.rfs.export import raw_clinical_vector

        rec = op_input.receive("clinical")["record"]
        vec = raw_clinical_vector({k: v for k, v in rec.items() if k != schema.PATIENT_ID}, self.clinical_set)
        op_output.emit(torch.from_numpy(np.asarray(vec, np.float32)), "clinical_vector")


def label_volumes_ml(label: np.ndarray, spacing_mm) -> dict:
    """{GTVp: mL, GTVn: mL} of a (D, H, W) label map with voxel spacing in mm."""
    vox_ml = float(np.prod(spacing_mm)) / 1000.0
    return {name: round(float((label == v).sum()) * vox_ml, 3) for v, name in LABELS.items()}


def _scalar(pred) -> float:
    arr = np.asarray(pred.cpu() if isinstance(pred, torch.Tensor) else pred, np.float64).reshape(-1)
    if arr.size != 1 or not np.isfinite(arr[0]):
        raise ValueError(f"expected one finite model output, got {arr.tolist()}")
    return float(arr[0])


def report_text(rep: dict) -> str:
    """Plain-text twin of report.json, the content of the DICOM Basic Text SR."""
    seg, rfs, dm = rep["segmentation"], rep["rfs"], rep["dm"]
    lines = [
        f"hnc-petct clinic app {rep['software']['hnc_petct']} - research use only, not for clinical decisions",
        f"Patient {rep['PatientID']}, study {rep['StudyInstanceUID']}",
        f"Segmentation ({seg['model']['name']} {seg['model']['version']}): GTVp {seg['volume_ml']['GTVp']:.1f} mL, "
        f"GTVn {seg['volume_ml']['GTVn']:.1f} mL",
    ]
    if rfs is not None:
        lines.append(f"RFS risk ({rfs['model']['name']} {rfs['model']['version']}): {rfs['risk']:.4f} "
                     "(higher = earlier relapse; a relative score, not a probability)")
    if dm is not None:
        lines.append(f"Distant metastasis ({dm['model']['name']} {dm['model']['version']}): P = {dm['probability']:.3f}"
                     f", threshold {dm['threshold']:.3f} -> {dm['class']}")
    for w in rep["warnings"]:
        lines.append(f"Warning: {w}")
    return "\n".join(lines)


class ReportOperator(PortsOperator):
    """In: ``series_info``, ``clinical``, ``geometry``, ``seg`` (label Image), ``rfs`` (risk), ``dm`` (probability
    or None). Writes ``report.json`` under ``output_folder``; out: ``text`` for the SR writer."""

    INPUTS = ("series_info", "clinical", "geometry", "seg")  # + rfs, dm when those models run
    OPTIONAL_OUTPUTS = ("text",)

    def __init__(self, fragment, *args, output_folder: Path, bundles: dict[str, BundleInfo],
                 dm_threshold: float | None = None, with_rfs: bool = True, with_dm: bool = True, **kwargs):
        self.output_folder = Path(output_folder)
        self.bundles = bundles
        self.dm_threshold = dm_threshold
        self.with_rfs, self.with_dm = with_rfs, with_dm
        super().__init__(fragment, *args, **kwargs)

    def ports(self):
        inputs = (*self.INPUTS, *(("rfs",) if self.with_rfs else ()), *(("dm",) if self.with_dm else ()))
        return inputs, self.OUTPUTS, self.OPTIONAL_OUTPUTS

    def compute(self, op_input, op_output, context):
        import monai.deploy

        import hnc_petct

        info = op_input.receive("series_info")
        clin = op_input.receive("clinical")
        geom = op_input.receive("geometry")
        seg: Image = op_input.receive("seg")
        label = np.asarray(seg.asnumpy())
        from .geometry import spacing_dhw

        vols = label_volumes_ml(label, spacing_dhw(geom["affine_lps_dhw"]))
        warnings = [*info["warnings"], *geom["warnings"], *clin["warnings"]]
        if vols["GTVp"] == 0 and vols["GTVn"] == 0:
            warnings.append("the segmentation found no tumour; the outcome models ran on an empty mask")
        rfs = None
        if self.with_rfs:
            rfs = {"risk": _scalar(op_input.receive("rfs")), "meaning": "higher = earlier relapse (relative score)",
                   "model": self.bundles["rfs"].record()}
        dm = None
        if self.with_dm:
            p = _scalar(op_input.receive("dm"))
            t = 0.5 if self.dm_threshold is None else float(self.dm_threshold)
            dm = {"probability": p, "threshold": t, "class": "high risk" if p >= t else "low risk",
                  "model": self.bundles["dm"].record()}
        for key, ran in (("rfs", self.with_rfs), ("dm", self.with_dm)):
            if not ran:
                warnings.append(f"{key} model not run (HNC_CLINIC_MODELS)")
        rep = {
            "PatientID": info["PatientID"], "StudyInstanceUID": info["StudyInstanceUID"],
            "inputs": {"CT": info["CT"], "PT": info["PT"], "pet_coverage_of_ct": round(geom["pet_coverage"], 4),
                       "clinical_sidecar": clin["sidecar"]},
            "clinical": clin["record"],
            "segmentation": {"labels": {str(k): v for k, v in LABELS.items()}, "volume_ml": vols,
                             "model": self.bundles["segmentation"].record(), "dicom_seg_folder": "seg"},
            "rfs": rfs,
            "dm": dm,
            "warnings": warnings,
            "software": {"hnc_petct": getattr(hnc_petct, "__version__", "0.1.0"),
                         "monai_deploy": getattr(monai.deploy, "__version__", "?"), "torch": torch.__version__,
                         "python": platform.python_version()},
        }
        write_json_atomic(self.output_folder / "report.json", rep)
        op_output.emit(report_text(rep), "text")


def dm_model_meta(bundle: BundleInfo) -> dict:
    """The DM bundle's ``models/model_meta.json`` (config, selected features, radiomics params, threshold)."""
    import json

    path = bundle.path / "models" / "model_meta.json"
    if not path.is_file():
        raise ValueError(f"{bundle.path}: models/model_meta.json missing (train the DM bundle first)")
    meta = json.loads(path.read_text())
    if meta.get("info", {}).get("organ_names"):
        raise ValueError(f"{bundle.path}: the DM model was trained with organ masks "
                         f"{meta['info']['organ_names']}, which this app cannot provide")
    return meta


class DmInputsOperator(PortsOperator):
    """In: ``image`` (2, W, H, D) [CT HU, SUV], ``seg`` (D, H, W) label map, ``clinical`` (record).

    Out, as the DM bundle's ``network_data_format`` declares them (``survival_head.dm.export``), built with
    the training's own code: ``dm_image`` (2, W, H, D) [CT HU, tumour label] on the CT grid, which the bundle's ``DMCropd`` crops
    (``survival_head.dm.transforms.TumourCrop`` at the trained size and field of view); ``radiomics`` (k,)
    float64 raw pyradiomics values of the k selected features on the predicted tumour and its peritumoral
    ring (NaN = missing); ``clinical_vector`` (10,) raw canonical vector.
    """

    INPUTS = ("image", "seg", "clinical")
    OUTPUTS = ("dm_image", "radiomics", "clinical_vector")

    def __init__(self, fragment, *args, model_meta: dict, selected: list[str], **kwargs):
        self.model_meta, self.selected = model_meta, list(selected)
        super().__init__(fragment, *args, **kwargs)

    def compute(self, op_input, op_output, context):
        from survival_head.dm import regions as R
        from survival_head.dm.export import raw_clinical_vector
        from survival_head.radiomics.extract import extract_patient, load_params

        image, seg, clin = op_input.receive("image"), op_input.receive("seg"), op_input.receive("clinical")
        rec = clin["record"]
        cfg = self.model_meta["config"]
        ct_whd = np.asarray(image.asnumpy()[0])
        label = np.asarray(seg.asnumpy()).astype(np.int16)  # (D, H, W)
        ct = ct_whd.transpose(2, 1, 0).astype(np.float32)
        if label.shape != ct.shape:
            raise ValueError(f"segmentation shape {label.shape} differs from the CT {ct.shape}")
        aff = image.metadata()["affine_lps_dhw"]
        cols = aff[:3, [2, 1, 0]]
        spacing = tuple(float(v) for v in np.linalg.norm(cols, axis=0))
        direction = tuple(float(v) for v in (cols / np.asarray(spacing)).ravel())
        tumour = R.tumour_from_label(label, bool(cfg.get("include_nodes", True)))
        if not tumour.any():
            raise StudyInputError("the segmentation found no tumour, so the DM model (tumour radiomics) cannot run")
        body = R.body_mask(ct)
        ring = R.peritumoral_ring(tumour, body, spacing, float(cfg.get("ring_mm", 8.0)), ct=ct)  # tissue only
        regions = R.Regions(str(rec.get(schema.PATIENT_ID)), ct, tumour, ring, body, spacing,
                            tuple(float(v) for v in aff[:3, 3]), direction, {}, primary=label == 1)
        params = self.model_meta.get("info", {}).get("radiomics_params")
        feats = extract_patient(regions, params if isinstance(params, dict) else load_params(params))
        rad = np.asarray([feats.get(n, np.nan) for n in self.selected], np.float64)
        from monai.deploy.core.domain import Image

        # the bundle's own preprocessing (DMCropd) builds the regions and the tumour-centred crop from this
        ct_label = np.stack([ct_whd.astype(np.float32), label.transpose(2, 1, 0).astype(np.float32)])
        op_output.emit(Image(ct_label, metadata=dict(image.metadata())), "dm_image")
        op_output.emit(torch.from_numpy(rad), "radiomics")
        vec = raw_clinical_vector({k: v for k, v in rec.items() if k != schema.PATIENT_ID})
        op_output.emit(torch.from_numpy(np.asarray(vec, np.float32)), "clinical_vector")
