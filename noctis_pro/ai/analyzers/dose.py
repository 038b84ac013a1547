"""Radiation dose: CTDIvol and DLP of a study, from CT images and from X-Ray Radiation Dose SRs when present.

From images: CTDIvol (0018,9345) of each CT image, per series the mean and maximum; the DLP is estimated as the
mean CTDIvol times the scanned length (slice positions' extent plus one slice thickness), and labelled an estimate.
From dose SRs (TID 10011 CT Radiation Dose): every NUM item coded Mean CTDIvol (DCM 113830), DLP (DCM 113838) and
CT Dose Length Product Total (DCM 113813), as the modality reported them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from noctis_pro.ai.analyzers.base import (
    AnalysisContext,
    AnalyzerOutput,
    SeriesFacts,
    SeriesRef,
)
from noctis_pro.ai.analyzers.pixels import header_read

DOSE_SR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR
}
CTDIVOL = "113830"
DLP = "113838"
DLP_TOTAL = "113813"


def sr_numbers(ds: Dataset) -> Iterator[tuple[str, float, str]]:
    """(code value, number, unit code) of every NUM content item in a SR tree, depth first."""
    for item in ds.get("ContentSequence", []):
        if item.get("ValueType") == "NUM" and item.get("ConceptNameCodeSequence") and item.get("MeasuredValueSequence"):
            measured = item.MeasuredValueSequence[0]
            units = measured.get("MeasurementUnitsCodeSequence")
            unit = units[0].CodeValue if units else ""
            yield str(item.ConceptNameCodeSequence[0].CodeValue), float(measured.NumericValue), str(unit)
        yield from sr_numbers(item)


def dose_from_sr(ds: Dataset) -> dict[str, Any]:
    ctdivol, dlp, total = [], [], []
    for code, value, _unit in sr_numbers(ds):
        if code == CTDIVOL:
            ctdivol.append(value)
        elif code == DLP:
            dlp.append(value)
        elif code == DLP_TOTAL:
            total.append(value)
    return {
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "ctdivol_mgy": ctdivol,  # one per irradiation event
        "dlp_mgy_cm": dlp,
        "dlp_total_mgy_cm": total[0] if total else (round(sum(dlp), 4) if dlp else None),
    }


def dose_from_ct_headers(headers: list[Dataset]) -> dict[str, Any] | None:
    values = [float(h.CTDIvol) for h in headers if h.get("CTDIvol") not in (None, "")]
    if not values:
        return None
    mean = sum(values) / len(values)
    positions = [float(h.SliceLocation) for h in headers if h.get("SliceLocation") not in (None, "")]
    if not positions:
        positions = [float(h.ImagePositionPatient[2]) for h in headers if h.get("ImagePositionPatient")]
    thickness = float(headers[0].get("SliceThickness", 0) or 0)
    length_cm = ((max(positions) - min(positions)) + thickness) / 10 if positions else None
    return {
        "images_with_ctdivol": len(values),
        "ctdivol_mean_mgy": round(mean, 4),
        "ctdivol_max_mgy": round(max(values), 4),
        "scan_length_cm": round(length_cm, 3) if length_cm is not None else None,
        "dlp_estimated_mgy_cm": round(mean * length_cm, 3) if length_cm is not None else None,
    }


class RadiationDose:
    name = "radiation_dose"
    scope = "study"

    def applies_to(self, facts: SeriesFacts) -> bool:
        return facts.modality.upper() == "CT" or bool(facts.sop_class_uids & DOSE_SR_SOP_CLASSES)

    def _series_dose(self, series: SeriesRef) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        reports = [
            dose_from_sr(header_read(i.path)) for i in series.instances if i.sop_class_uid in DOSE_SR_SOP_CLASSES
        ]
        images = None
        if series.modality.upper() == "CT":
            images = dose_from_ct_headers(
                [header_read(i.path) for i in series.instances if i.sop_class_uid not in DOSE_SR_SOP_CLASSES]
            )
        return reports, images

    def run(self, context: AnalysisContext) -> AnalyzerOutput:
        dose_reports: list[dict[str, Any]] = []
        image_series: list[dict[str, Any]] = []
        for series in context.series:
            reports, images = self._series_dose(series)
            dose_reports += reports
            if images is not None:
                image_series.append({"series_instance_uid": series.series_instance_uid, **images})
        ctdivol_max = max(
            [s["ctdivol_max_mgy"] for s in image_series] + [v for r in dose_reports for v in r["ctdivol_mgy"]],
            default=None,
        )
        reported_dlp = [r["dlp_total_mgy_cm"] for r in dose_reports if r["dlp_total_mgy_cm"] is not None]
        result = {
            "ctdivol_max_mgy": ctdivol_max,
            "dlp_total_mgy_cm": reported_dlp[0] if reported_dlp else None,  # as the modality's dose SR reports it
            "dlp_source": "dose_sr" if reported_dlp else None,
            "dose_reports": dose_reports,
            "image_series": image_series,
        }
        return AnalyzerOutput(result=result)
