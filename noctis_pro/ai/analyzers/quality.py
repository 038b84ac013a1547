"""Image quality: noise, SNR, clipping and saturation, and for CT the HU of air.

Regions: the four corner squares (side = 1/8 of the smaller image dimension, at least 4 pixels) are candidate
background regions; the most homogeneous one (lowest SD) is taken as the background, which outside a patient is
air. Noise is its SD; the signal is the mean of the central square (side 1/4). SNR = (signal - background mean) /
noise. Clipping is the fraction of pixels at the smallest value the stored format can hold, saturation the fraction
at the largest. For CT the background mean is the HU of air (about -1000 on a calibrated scanner).

Up to SAMPLED_SLICES slices spread evenly over the series are measured; the series figure is their median.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from noctis_pro.ai.analyzers.base import AnalysisContext, AnalyzerOutput, Measurement, SeriesFacts
from noctis_pro.ai.analyzers.pixels import frame_read, is_image_series, stored_range

SAMPLED_SLICES = 5
CT_AIR_HU = -1000.0
CT_AIR_TOLERANCE_HU = 50.0  # a calibrated scanner reads air within a few tens of HU


def _corner_regions(values: np.ndarray) -> list[np.ndarray]:
    rows, columns = values.shape
    side = max(4, min(rows, columns) // 8)
    return [
        values[:side, :side],
        values[:side, columns - side :],
        values[rows - side :, :side],
        values[rows - side :, columns - side :],
    ]


def frame_quality(values: np.ndarray, stored: np.ndarray, *, stored_min: int, stored_max: int) -> dict[str, Any]:
    """Quality figures of one frame. `values` in modality units (HU for CT), `stored` the raw stored values."""
    if values.ndim != 2 or min(values.shape) < 8:
        raise ValueError(f"a frame of {values.shape} is too small to measure")
    background = min(_corner_regions(values), key=lambda region: float(region.std()))
    rows, columns = values.shape
    side = max(2, min(rows, columns) // 4)
    top, left = (rows - side) // 2, (columns - side) // 2
    centre = values[top : top + side, left : left + side]
    noise = float(background.std(ddof=1))
    background_mean = float(background.mean())
    signal = float(centre.mean())
    pixels = stored.size
    return {
        "noise_sd": noise,
        "background_mean": background_mean,
        "signal_mean": signal,
        "snr": (signal - background_mean) / noise if noise > 0 else None,
        "clipped_fraction": float(np.count_nonzero(stored <= stored_min)) / pixels,
        "saturated_fraction": float(np.count_nonzero(stored >= stored_max)) / pixels,
    }


def sampled(items: Sequence[Any], count: int = SAMPLED_SLICES) -> list[Any]:
    """Up to `count` items spread evenly, the middle one included for an odd count."""
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def series_quality(frames: Sequence[dict[str, Any]], *, ct: bool) -> dict[str, Any]:
    """The series figures: the median of each frame figure; for CT the air HU and whether it is within tolerance."""

    def median(key: str) -> float | None:
        values = [f[key] for f in frames if f[key] is not None]
        return round(float(statistics.median(values)), 4) if values else None

    out: dict[str, Any] = {
        "slices_measured": len(frames),
        "noise_sd": median("noise_sd"),
        "snr": median("snr"),
        "signal_mean": median("signal_mean"),
        "background_mean": median("background_mean"),
        "clipped_fraction": median("clipped_fraction"),
        "saturated_fraction": median("saturated_fraction"),
    }
    if ct:
        air = out["background_mean"]
        out["ct_air_hu"] = air
        out["ct_air_within_tolerance"] = air is not None and abs(air - CT_AIR_HU) <= CT_AIR_TOLERANCE_HU
    return out


class ImageQuality:
    name = "image_quality"
    scope = "series"

    def applies_to(self, facts: SeriesFacts) -> bool:
        return is_image_series(facts)

    def run(self, context: AnalysisContext) -> AnalyzerOutput:
        (series,) = context.series
        frames = []
        for instance in sampled(series.instances):
            ds, stored, values = frame_read(instance.path)
            low, high = stored_range(ds)
            frames.append(frame_quality(values, stored, stored_min=low, stored_max=high))
        ct = series.modality.upper() == "CT"
        result = series_quality(frames, ct=ct)
        result["series_instance_uid"] = series.series_instance_uid
        measurements = [
            Measurement("NOC-Q1", "Background noise SD", result["noise_sd"], "1", "no units"),
            Measurement("NOC-Q3", "Clipped pixel fraction", result["clipped_fraction"], "1", "no units"),
            Measurement("NOC-Q4", "Saturated pixel fraction", result["saturated_fraction"], "1", "no units"),
        ]
        if result["snr"] is not None:
            measurements.append(Measurement("NOC-Q2", "Signal to noise ratio", result["snr"], "1", "no units"))
        if ct and result["ct_air_hu"] is not None:
            measurements.append(
                Measurement("NOC-Q5", "CT number of air", result["ct_air_hu"], "[hnsf'U]", "Hounsfield unit")
            )
        return AnalyzerOutput(
            result=result, measurements=measurements, measurement_series_uid=series.series_instance_uid
        )
