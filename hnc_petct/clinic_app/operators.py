"""Our MONAI Deploy operators, only where the SDK has no stock one.

* :class:`SeriesCheckOperator`: one study, one CT, one attenuation-corrected PET; complete series.
* :class:`PetSuvOperator`: PET (Bq/mL, per-slice slope) -> SUVbw on the PET grid.
* :class:`PetCtImageOperator`: PET resampled onto the CT grid; the 2-channel ``image`` (CT HU, SUV)
  the bundles take, as a MONAI-style channel-first (C, W, H, D) array with RAS affine metadata.
* :class:`ClinicalRecordOperator`: header age/sex + JSON sidecar -> clinical record.
* :class:`InputsWriterOperator`: writes what the models see as NIfTI (``inspect`` app, QA).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from monai.deploy.core import Image

from . import clinical as clinical_mod
from . import geometry, suv
from .errors import StudyInputError
from .ports import PortsOperator
from .series_check import CT, PET, _datasets, as_selection, pick

log = logging.getLogger(__name__)


def _series_of(selection) -> object:
    return selection[0].selected_series[0].series


class StudyFolderOperator(PortsOperator):
    """An operator of ours that also reads the study folder itself (``input_dir``: unread files, the sidecar)."""

    def __init__(self, fragment, *args, input_dir=None, **kwargs):
        self.input_dir = input_dir
        super().__init__(fragment, *args, **kwargs)


class SeriesCheckOperator(StudyFolderOperator):
    """In: ``dicom_study_list`` (stock loader), ``study_selected_series_list`` (stock selector).

    Out: ``ct_series``, ``pet_series`` (one-series ``List[StudySelectedSeries]``), ``series_info`` (dict).
    """

    INPUTS = ("dicom_study_list", "study_selected_series_list")
    OUTPUTS = ("ct_series", "pet_series")
    OPTIONAL_OUTPUTS = ("series_info",)

    def compute(self, op_input, op_output, context):
        studies = op_input.receive("dicom_study_list")
        selected = op_input.receive("study_selected_series_list")
        study, ct, pet, warnings = pick(studies, selected, self.input_dir)
        for w in warnings:
            log.warning(w)
        first = _datasets(ct)[0]
        info = {
            "StudyInstanceUID": study.StudyInstanceUID, "PatientID": str(first.get("PatientID", "")),
            "CT": {"SeriesInstanceUID": ct.SeriesInstanceUID, "SeriesDescription": ct.SeriesDescription,
                   "instances": len(ct.get_sop_instances())},
            "PT": {"SeriesInstanceUID": pet.SeriesInstanceUID, "SeriesDescription": pet.SeriesDescription,
                   "instances": len(pet.get_sop_instances())},
            "PatientAge": str(first.get("PatientAge", "") or ""),
            "PatientSex": str(first.get("PatientSex", "") or ""),
            "warnings": warnings,
        }
        op_output.emit(as_selection(study, ct, CT), "ct_series")
        op_output.emit(as_selection(study, pet, PET), "pet_series")
        op_output.emit(info, "series_info")


class PetSuvOperator(PortsOperator):
    """In: ``pet_series`` and ``pet_image`` (stock volume of it). Out: ``suv_image`` (D, H, W) float32 SUVbw.

    The pixel values are re-read as float slice by slice: the stock volume operator types the whole
    volume after its first slice, which truncates per-slice-rescaled PET when that slice is integral.
    """

    INPUTS = ("pet_series", "pet_image")
    OUTPUTS = ("suv_image",)

    def compute(self, op_input, op_output, context):
        selection = op_input.receive("pet_series")
        stock = op_input.receive("pet_image")
        series = _series_of(selection)
        dss = geometry.sort_datasets(_datasets(series))
        factors = suv.suv_factors(dss, series)
        values = suv.read_float_slices(dss) * factors[:, None, None].astype(np.float32)
        if tuple(stock.asnumpy().shape) != values.shape:
            raise StudyInputError(f"volume shape {stock.asnumpy().shape} differs from its slices {values.shape}",
                                  series)
        meta = {"affine_lps_dhw": geometry.affine_dhw(dss), "SeriesInstanceUID": series.SeriesInstanceUID,
                "SeriesDescription": series.SeriesDescription,
                "suv_per_bqml": [float(factors.min()), float(factors.max())], "units": "SUVbw"}
        op_output.emit(Image(values, meta), "suv_image")


class PetCtImageOperator(PortsOperator):
    """In: ``ct_image`` (stock volume, HU), ``ct_series``, ``suv_image``. Out: ``image``, ``geometry``.

    ``image``: (2, W, H, D) float32, channel 0 CT (HU), channel 1 PET (SUVbw) linearly resampled onto
    the CT grid; metadata ``affine``/``original_affine`` (RAS, index (i, j, k)), ``spacing`` (mm, W H D),
    ``original_channel_dim`` 0, the form MONAI's ``LoadImaged`` + ``EnsureChannelFirstd`` give a NIfTI.
    """

    INPUTS = ("ct_image", "ct_series", "suv_image")
    OUTPUTS = ("image",)
    OPTIONAL_OUTPUTS = ("geometry",)

    def __init__(self, fragment, *args, min_coverage_warn: float = 0.9, **kwargs):
        self.min_coverage_warn = min_coverage_warn
        super().__init__(fragment, *args, **kwargs)

    def compute(self, op_input, op_output, context):
        ct_img = op_input.receive("ct_image")
        ct_series = _series_of(op_input.receive("ct_series"))
        suv_img = op_input.receive("suv_image")
        ct_dss = geometry.sort_datasets(_datasets(ct_series))
        ct_aff = geometry.affine_dhw(ct_dss)
        ct = np.asarray(ct_img.asnumpy())
        pet_aff = suv_img.metadata()["affine_lps_dhw"]
        pet_on_ct, frac = geometry.resample_to(suv_img.asnumpy(), pet_aff, ct.shape, ct_aff)
        pm = suv_img.metadata()
        pet_series = type("PetSeries", (), {"SeriesInstanceUID": pm["SeriesInstanceUID"], "Modality": "PT",
                                            "SeriesDescription": pm.get("SeriesDescription")})()
        geometry.check_overlap(frac, ct_series, pet_series, geometry.extent_z(ct_aff, ct.shape),
                               geometry.extent_z(pet_aff, suv_img.asnumpy().shape))
        warnings = []
        if frac < self.min_coverage_warn:
            warnings.append(f"the PET covers only {frac:.0%} of the CT volume; outside it SUV = 0")
        ras = geometry.ras_affine_whd(ct_aff)
        both = np.stack([ct.astype(np.float32), pet_on_ct]).transpose(0, 3, 2, 1)  # (2, W, H, D)
        meta = {"affine": ras.copy(), "original_affine": ras.copy(), "spacing": np.asarray(
            geometry.spacing_dhw(ct_aff)[::-1]), "spatial_shape": np.asarray(both.shape[1:]),
            "original_channel_dim": 0, "space": "RAS", "filename_or_obj": ct_series.SeriesInstanceUID,
            "affine_lps_dhw": ct_aff}
        op_output.emit(Image(both, meta), "image")
        op_output.emit({"affine_lps_dhw": ct_aff, "pet_coverage": frac, "warnings": warnings}, "geometry")


class ClinicalRecordOperator(StudyFolderOperator):
    """In: ``series_info``. Out: ``clinical`` = {"record": {...HECKTOR columns}, "sidecar": path, "warnings"}."""

    INPUTS = ("series_info",)
    OUTPUTS = ("clinical",)

    def compute(self, op_input, op_output, context):
        info = op_input.receive("series_info")
        sidecar = clinical_mod.find_sidecar(self.input_dir)
        rec, warnings = clinical_mod.clinical_record(info["PatientAge"], info["PatientSex"], sidecar,
                                                     info["PatientID"])
        op_output.emit({"record": rec, "sidecar": str(sidecar) if sidecar else None, "warnings": warnings},
                       "clinical")


def _sitk_from_dhw(arr: np.ndarray, affine: np.ndarray):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    cols = affine[:3, [2, 1, 0]]
    sp = np.linalg.norm(cols, axis=0)
    img.SetSpacing(tuple(float(v) for v in sp))
    img.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    img.SetDirection(tuple(float(v) for v in (cols / sp).ravel()))
    return img


class InputsWriterOperator(PortsOperator):
    """In: ``image``, ``suv_image``, ``clinical``, ``series_info``. Writes NIfTI + JSON under ``output_folder``.

    ``ct_hu.nii.gz`` (int16), ``pet_suv.nii.gz`` (PET grid), ``pet_suv_on_ct.nii.gz``, ``inputs.json``.
    """

    INPUTS = ("image", "suv_image", "clinical", "series_info")

    def __init__(self, fragment, *args, output_folder: Path, **kwargs):
        self.output_folder = Path(output_folder)
        super().__init__(fragment, *args, **kwargs)

    def compute(self, op_input, op_output, context):
        from hnc_core.io import write_image_atomic, write_json_atomic

        image, suv_img = op_input.receive("image"), op_input.receive("suv_image")
        clin, info = op_input.receive("clinical"), op_input.receive("series_info")
        aff = image.metadata()["affine_lps_dhw"]
        both = image.asnumpy().transpose(0, 3, 2, 1)  # (2, D, H, W)
        out = self.output_folder
        write_image_atomic(_sitk_from_dhw(both[0].round().astype(np.int16), aff), out / "ct_hu.nii.gz")
        write_image_atomic(_sitk_from_dhw(both[1], aff), out / "pet_suv_on_ct.nii.gz")
        write_image_atomic(_sitk_from_dhw(suv_img.asnumpy(), suv_img.metadata()["affine_lps_dhw"]),
                           out / "pet_suv.nii.gz")
        write_json_atomic(out / "inputs.json", {"series": info, "clinical": clin})
