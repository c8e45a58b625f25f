"""The one exception type the clinic app raises for a study it cannot use."""

from __future__ import annotations


class StudyInputError(ValueError):
    """A DICOM study the app refuses, with the series it concerns and what is wrong.

    ``str(err)`` is the one-line message printed to the user, e.g.
    ``series 1.2.3 (PT, "PET AC"): Units is CNTS, not BQML; counts cannot be converted to SUVbw``.
    """

    def __init__(self, reason: str, series: "object | None" = None):
        self.reason = reason
        self.series_uid = getattr(series, "SeriesInstanceUID", None) if series is not None else None
        super().__init__(f"{describe_series(series)}: {reason}" if series is not None else reason)


def describe_series(series) -> str:
    """``series <uid> (<modality>, "<description>")`` of a MONAI Deploy DICOMSeries."""
    uid = getattr(series, "SeriesInstanceUID", "?")
    mod = getattr(series, "Modality", None) or "?"
    desc = getattr(series, "SeriesDescription", None)
    return f'series {uid} ({mod}{", " + repr(str(desc)) if desc else ""})'
