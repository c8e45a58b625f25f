"""The MONAI Deploy applications: the clinic app and its input-inspection twin.

Both share one front end of stock operators and ours:

    DICOMDataLoaderOperator -> DICOMSeriesSelectorOperator (all matches) -> SeriesCheckOperator
      -> ct_series -> DICOMSeriesToVolumeOperator -> ct_image ---------------------\\
      -> pet_series -> DICOMSeriesToVolumeOperator -> PetSuvOperator -> suv_image -> PetCtImageOperator -> image
      -> series_info -> ClinicalRecordOperator -> clinical

Run with MONAI Deploy's app arguments: ``-i STUDY_DIR -o OUT [-m MODELS] [-l LEVEL]``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

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
        with Staging(ctx.output_path) as st:
            app.staging_dir = st.path
            app.run()
            st.commit()
    except StudyInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
