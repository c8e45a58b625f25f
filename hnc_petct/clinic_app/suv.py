"""PET activity concentration (Bq/mL) to SUVbw from the DICOM header.

SUVbw = value (Bq/mL) x weight (g) / decayed dose (Bq), the dose decayed from the injection
(``RadiopharmaceuticalStartDateTime``, else ``RadiopharmaceuticalStartTime`` on the acquisition date)
to the time the pixel values are decay-corrected to:

* ``DecayCorrection = START``: the earliest ``AcquisitionDate/Time`` of the series (not ``SeriesTime``,
  which reconstruction and anonymisation move);
* ``ADMIN``: the injection itself (no decay);
* ``NONE``: each slice's own acquisition time.

Pixel values are read as float per slice (``pixel_array * RescaleSlope + RescaleIntercept``); each PET
slice has its own ``RescaleSlope``. Anything missing or not BQML raises :class:`StudyInputError`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Sequence

import numpy as np

from .errors import StudyInputError

# (what is needed, the tags it comes from) - named in the errors.
REQUIRED = {
    "Units": "Units (0054,1001)",
    "PatientWeight": "PatientWeight (0010,1030)",
    "RadionuclideTotalDose": "RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose (0018,1074)",
    "RadionuclideHalfLife": "RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife (0018,1075)",
    "RadiopharmaceuticalStartTime": "RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime "
                                    "(0018,1072) or RadiopharmaceuticalStartDateTime (0018,1078)",
    "AcquisitionTime": "AcquisitionTime (0008,0032)",
    "DecayCorrection": "DecayCorrection (0054,1102)",
}


def _parse_tm(value) -> dt.time:
    s = str(value).strip()
    if not s:
        raise ValueError("empty TM")
    whole, _, frac = s.partition(".")
    whole = whole.replace(":", "")
    h = int(whole[0:2])
    m = int(whole[2:4]) if len(whole) >= 4 else 0
    sec = int(whole[4:6]) if len(whole) >= 6 else 0
    us = int((frac + "000000")[:6]) if frac else 0
    return dt.time(h, m, sec, us)


def _parse_da(value) -> dt.date:
    s = str(value).strip()
    return dt.date(int(s[0:4]), int(s[4:6]), int(s[6:8]))


def _parse_dt(value) -> dt.datetime:
    s = str(value).strip().split("+")[0].split("-")[0]
    date = _parse_da(s[:8])
    return dt.datetime.combine(date, _parse_tm(s[8:]) if len(s) > 8 else dt.time())


def _acquisition_datetime(ds, series) -> dt.datetime:
    if str(ds.get("AcquisitionDateTime", "") or "").strip():
        return _parse_dt(ds.AcquisitionDateTime)
    t = str(ds.get("AcquisitionTime", "") or "").strip()
    if not t:
        raise StudyInputError(f"{REQUIRED['AcquisitionTime']} is missing in instance {ds.get('SOPInstanceUID')}; "
                              "cannot decay-correct the injected dose", series)
    d = str(ds.get("AcquisitionDate", "") or ds.get("SeriesDate", "") or ds.get("StudyDate", "") or "").strip()
    date = _parse_da(d) if d else dt.date(2000, 1, 1)
    return dt.datetime.combine(date, _parse_tm(t))


def _radiopharmaceutical(ds, series):
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        raise StudyInputError("RadiopharmaceuticalInformationSequence (0054,0016) is missing: no injected dose, "
                              "half-life or injection time, so the PET cannot be converted to SUVbw", series)
    return seq[0]


def _positive(item, key: str, series) -> float:
    raw = item.get(key)
    try:
        v = float(raw)
    except (TypeError, ValueError):
        v = math.nan
    if not (v > 0 and math.isfinite(v)):
        raise StudyInputError(f"{REQUIRED[key]} is {'missing' if raw in (None, '') else repr(raw)}; "
                              "needed for SUVbw", series)
    return v


def suv_factors(datasets: Sequence, series=None) -> np.ndarray:
    """SUVbw per (Bq/mL) for each slice, shape (n_slices,), in the order of ``datasets``.

    ``datasets``: the pydicom datasets of one PET series. ``series`` (a MONAI Deploy DICOMSeries)
    only names the series in errors. Raises :class:`StudyInputError` when a needed tag is missing,
    the units are not BQML or the decay correction is not one of START, ADMIN, NONE.
    """
    if not datasets:
        raise StudyInputError("the PET series holds no instances", series)
    first = datasets[0]
    units = str(first.get("Units", "") or "").strip().upper()
    if units != "BQML":
        raise StudyInputError(
            f"{REQUIRED['Units']} is {units or 'missing'}, not BQML; only activity concentration in Bq/mL can be "
            "converted to SUVbw (export the attenuation- and decay-corrected PET in BQML)", series)
    weight_kg = _positive(first, "PatientWeight", series)
    rp = _radiopharmaceutical(first, series)
    dose = _positive(rp, "RadionuclideTotalDose", series)
    half_life = _positive(rp, "RadionuclideHalfLife", series)
    acq = [_acquisition_datetime(ds, series) for ds in datasets]
    if str(rp.get("RadiopharmaceuticalStartDateTime", "") or "").strip():
        injection = _parse_dt(rp.RadiopharmaceuticalStartDateTime)
    elif str(rp.get("RadiopharmaceuticalStartTime", "") or "").strip():
        injection = dt.datetime.combine(min(acq).date(), _parse_tm(rp.RadiopharmaceuticalStartTime))
        if injection > min(acq):  # injected the evening before a scan after midnight
            injection -= dt.timedelta(days=1)
    else:
        raise StudyInputError(f"{REQUIRED['RadiopharmaceuticalStartTime']} is missing; needed for SUVbw", series)
    corr = str(first.get("DecayCorrection", "") or "").strip().upper()
    if corr == "START":
        ref = [min(acq)] * len(acq)
    elif corr == "ADMIN":
        ref = [injection] * len(acq)
    elif corr == "NONE":
        ref = acq
    else:
        raise StudyInputError(f"{REQUIRED['DecayCorrection']} is {corr or 'missing'}; expected START, ADMIN or NONE",
                              series)
    delays = np.array([(r - injection).total_seconds() for r in ref])
    if (delays < 0).any():
        raise StudyInputError(f"the acquisition starts {-delays.min():.0f} s before the injection "
                              "(RadiopharmaceuticalStartTime after AcquisitionTime)", series)
    decayed = dose * np.exp2(-delays / half_life)
    return weight_kg * 1000.0 / decayed


def read_float_slices(datasets: Sequence) -> np.ndarray:
    """Rescaled pixel values, shape (n_slices, rows, cols), float32; each slice with its own slope/intercept."""
    out = np.empty((len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)), np.float32)
    for k, ds in enumerate(datasets):
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        out[k] = ds.pixel_array.astype(np.float64) * slope + inter
    return out


def suv_volume(datasets: Sequence, series=None) -> np.ndarray:
    """SUVbw volume, shape (n_slices, rows, cols), float32, from the (sorted) PET datasets."""
    return read_float_slices(datasets) * suv_factors(datasets, series)[:, None, None].astype(np.float32)
