"""The MONAI Deploy applications: the clinic app and its input-inspection twin.

Both share one front end of stock operators and ours:

    DICOMDataLoaderOperator -> DICOMSeriesSelectorOperator (all matches) -> SeriesCheckOperator
      -> ct_series -> DICOMSeriesToVolumeOperator -> ct_image ---------------------\\
      -> pet_series -> DICOMSeriesToVolumeOperator -> PetSuvOperator -> suv_image -> PetCtImageOperator -> image
      -> series_info -> ClinicalRecordOperator -> clinical

Run with MONAI Deploy's app arguments: ``-i STUDY_DIR -o OUT [-m MODELS] [-l LEVEL]``.
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

import numpy as np
from holoscan.conditions import CountCondition
from monai.deploy.core import Application
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator

from .errors import StudyInputError
from .operators import (ClinicalRecordOperator, InputsWriterOperator, PetCtImageOperator, PetSuvOperator,
                        SeriesCheckOperator)
from .series_check import selection_rules_json
from .staging import Staging

log = logging.getLogger(__name__)


class _StudyApp(Application):
    """Common front end. ``staging_dir`` is set by :func:`main` before ``run``."""

    staging_dir: Path | None = None

    def _context(self):
        ctx = Application.init_app_context(self.argv)
        self.input_dir = Path(ctx.input_path)
        self.out_dir = Path(self.staging_dir or ctx.output_path)
        return ctx

    def compose_front_end(self) -> dict:
        loader = DICOMDataLoaderOperator(self, CountCondition(self, 1), input_folder=self.input_dir,
                                         name="dicom_loader")
        selector = DICOMSeriesSelectorOperator(self, rules=selection_rules_json(), all_matched=True,
                                               name="series_selector")
        check = SeriesCheckOperator(self, input_dir=self.input_dir, name="series_check")
        ct_vol = DICOMSeriesToVolumeOperator(self, name="ct_volume")
        pet_vol = DICOMSeriesToVolumeOperator(self, name="pet_volume")
        suv_op = PetSuvOperator(self, name="pet_suv")
        petct = PetCtImageOperator(self, name="petct_image")
        clin = ClinicalRecordOperator(self, input_dir=self.input_dir, name="clinical_record")
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(loader, check, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, check, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(check, ct_vol, {("ct_series", "study_selected_series_list")})
        self.add_flow(check, pet_vol, {("pet_series", "study_selected_series_list")})
        self.add_flow(check, suv_op, {("pet_series", "pet_series")})
        self.add_flow(pet_vol, suv_op, {("image", "pet_image")})
        self.add_flow(ct_vol, petct, {("image", "ct_image")})
        self.add_flow(check, petct, {("ct_series", "ct_series")})
        self.add_flow(suv_op, petct, {("suv_image", "suv_image")})
        self.add_flow(check, clin, {("series_info", "series_info")})
        return {"check": check, "suv": suv_op, "petct": petct, "clinical": clin}


class InspectApp(_StudyApp):
    """Front end only: writes what the models would see (``inputs/ct_hu.nii.gz``, ``pet_suv*.nii.gz``,
    ``inputs.json``): a site's acceptance check of its DICOM export, no model needed."""

    def compose(self):
        self._context()
        ops = self.compose_front_end()
        writer = InputsWriterOperator(self, output_folder=self.out_dir / "inputs", name="inputs_writer")
        self.add_flow(ops["petct"], writer, {("image", "image")})
        self.add_flow(ops["suv"], writer, {("suv_image", "suv_image")})
        self.add_flow(ops["clinical"], writer, {("clinical", "clinical")})
        self.add_flow(ops["check"], writer, {("series_info", "series_info")})


def segment_descriptions(version: str) -> list:
    """GTVp = 1, GTVn = 2 as DICOM SEG segments (SNOMED CT codes)."""
    from monai.deploy.operators.dicom_seg_writer_operator import SegmentDescription
    from pydicom.sr.codedict import codes

    common = dict(segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                  segmented_property_type=codes.SCT.Neoplasm, algorithm_name="HecMamba",
                  algorithm_family=codes.DCM.ArtificialIntelligence, algorithm_version=str(version))
    return [SegmentDescription(segment_label="GTVp", **common),
            SegmentDescription(segment_label="GTVn", anatomic_regions=[codes.SCT.LymphNode], **common)]


class ClinicApp(_StudyApp):
    """The whole app: front end -> segmentation bundle -> DICOM SEG; RFS and DM bundles -> report + SR.

        image -> MonaiBundleInferenceOperator(segmentation) -> pred -> DICOMSegmentationWriterOperator (seg/)
        image + RfsClinicalOperator -> MonaiBundleInferenceOperator(rfs) -> risk
        image + pred + clinical -> DM inputs -> MonaiBundleInferenceOperator(dm) -> probability
        -> ReportOperator (report.json) -> DICOMTextSRWriterOperator (sr/)

    ``bundles`` (from :func:`bundles.resolve_all`) is set by :func:`main` before ``run``.
    """

    bundles: dict | None = None

    def _bundle_op(self, ctx, info, inputs: dict, output_type, name: str):
        from monai.deploy.core import IOType
        from monai.deploy.operators.monai_bundle_inference_operator import IOMapping, MonaiBundleInferenceOperator

        declared = list(info.inputs)
        if declared != list(inputs):
            raise StudyInputError(f"bundle {info.path} declares inputs {declared}; this app feeds {list(inputs)}")
        out_key = next(iter(info.outputs))
        return MonaiBundleInferenceOperator(
            self, app_context=ctx, name=name, model_name=info.slot.folder, bundle_path=info.path,
            input_mapping=[IOMapping(k, t, IOType.IN_MEMORY) for k, t in inputs.items()],
            output_mapping=[IOMapping(out_key, output_type, IOType.IN_MEMORY)]), out_key

    def compose(self):
        import numpy as np
        import torch
        from monai.deploy.core import Image
        from monai.deploy.operators.dicom_seg_writer_operator import DICOMSegmentationWriterOperator
        from monai.deploy.operators.dicom_text_sr_writer_operator import DICOMTextSRWriterOperator
        from monai.deploy.operators.dicom_utils import ModelInfo

        from .model_ops import ReportOperator, RfsClinicalOperator, rfs_clinical_set

        ctx = copy.copy(self._context())
        # The bundles are directories resolved by bundles.resolve; MONAI Deploy's model factory would wrap
        # the -m folder as one model and the stock operator would look the bundle up in it by name.
        ctx.models = None
        b = self.bundles
        ops = self.compose_front_end()
        seg, seg_out = self._bundle_op(ctx, b["segmentation"], {"image": Image}, Image, "seg_bundle")
        self.add_flow(ops["petct"], seg, {("image", "image")})
        seg_info = b["segmentation"].record()
        seg_writer = DICOMSegmentationWriterOperator(
            self, segment_descriptions=segment_descriptions(seg_info["version"]), output_folder=self.out_dir / "seg",
            model_info=ModelInfo("hnc-petct", seg_info["name"], str(seg_info["version"]), ""), name="seg_writer")
        self.add_flow(seg, seg_writer, {(seg_out, "seg_image")})
        self.add_flow(ops["check"], seg_writer, {("ct_series", "study_selected_series_list")})

        rfs = None
        if "rfs" in b:
            rfs_clin = RfsClinicalOperator(self, clinical_set=rfs_clinical_set(b["rfs"]), name="rfs_clinical")
            rfs, rfs_out = self._bundle_op(ctx, b["rfs"], {"image": Image, "clinical": torch.Tensor}, np.ndarray,
                                           "rfs_bundle")
            self.add_flow(ops["clinical"], rfs_clin, {("clinical", "clinical")})
            self.add_flow(ops["petct"], rfs, {("image", "image")})
            self.add_flow(rfs_clin, rfs, {("clinical_vector", "clinical")})

        dm = self.compose_dm(ctx, ops, seg, seg_out) if "dm" in b else None
        report = ReportOperator(self, output_folder=self.out_dir, bundles=b, with_rfs=rfs is not None,
                                with_dm=dm is not None, dm_threshold=None if dm is None else dm[2], name="report")
        self.add_flow(ops["check"], report, {("series_info", "series_info")})
        self.add_flow(ops["clinical"], report, {("clinical", "clinical")})
        self.add_flow(ops["petct"], report, {("geometry", "geometry")})
        self.add_flow(seg, report, {(seg_out, "seg")})
        if rfs is not None:
            self.add_flow(rfs, report, {(rfs_out, "rfs")})
        if dm is not None:
            self.add_flow(dm[0], report, {(dm[1], "dm")})
        sr = DICOMTextSRWriterOperator(self, copy_tags=True, output_folder=self.out_dir / "sr", name="sr_writer",
                                       model_info=ModelInfo("hnc-petct", "hnc-petct clinic app", "0.1.0", ""))
        self.add_flow(report, sr, {("text", "text")})
        self.add_flow(ops["check"], sr, {("ct_series", "study_selected_series_list")})

    def compose_dm(self, ctx, ops, seg, seg_out):
        """DM stage: DmInputsOperator -> stock operator; returns (operator, output port, threshold)."""
        import torch

        from .model_ops import DmInputsOperator, dm_model_meta

        info = self.bundles["dm"]
        meta = dm_model_meta(info)
        selected = list(meta["selector"]["selected"])
        prep = DmInputsOperator(self, model_meta=meta, selected=selected, name="dm_inputs")
        dm, out = self._bundle_op(ctx, info, {"image": torch.Tensor, "radiomics": torch.Tensor,
                                              "clinical": torch.Tensor}, np.ndarray, "dm_bundle")
        self.add_flow(ops["petct"], prep, {("image", "image")})
        self.add_flow(seg, prep, {(seg_out, "seg")})
        self.add_flow(ops["clinical"], prep, {("clinical", "clinical")})
        self.add_flow(prep, dm, {("dm_image", "image"), ("radiomics", "radiomics"),
                                 ("clinical_vector", "clinical")})
        return dm, out, float(meta.get("threshold", 0.5))


def main(app_cls: type[_StudyApp], argv: list[str] | None = None) -> int:
    """Run ``app_cls`` on one study; 0 on success, 2 with one ``error:`` line for a refused study.

    Everything is written into a staging folder inside OUT and moved in only when the run succeeds.
    """
    app = app_cls(argv) if argv else app_cls()
    ctx = Application.init_app_context(app.argv)
    if not ctx.input_path or not Path(ctx.input_path).is_dir():
        print(f"error: input folder {ctx.input_path} does not exist", file=sys.stderr)
        return 2
    try:
        if issubclass(app_cls, ClinicApp):
            from .bundles import resolve_all

            app.bundles = resolve_all(ctx.model_path if ctx.model_path and Path(ctx.model_path).is_dir() else None)
        with Staging(ctx.output_path) as st:
            app.staging_dir = st.path
            app.run()
            st.commit()
    except StudyInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
