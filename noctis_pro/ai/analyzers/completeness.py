"""Series completeness: missing instance numbers, gaps and uneven slice spacing, mixed orientations or sizes.

Geometry comes from the indexed attributes (ImagePositionPatient, ImageOrientationPatient, Rows, Columns), so no
file is opened. Slice positions are projected on the stack's normal (row direction x column direction); the
nominal spacing is the median of consecutive distances. A distance more than 1.5 nominal spacings is a gap (with
round(d / spacing) - 1 slices missing); one that differs from the nominal by more than the tolerance makes the
spacing uneven.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from noctis_pro.ai.analyzers.base import (
    AnalysisContext,
    AnalyzerOutput,
    InstanceRef,
    Measurement,
    SeriesFacts,
)
from noctis_pro.ai.analyzers.pixels import is_image_series

SPACING_TOLERANCE_MM = 0.01  # plus SPACING_TOLERANCE_FRACTION of the nominal spacing
SPACING_TOLERANCE_FRACTION = 0.05
GAP_FACTOR = 1.5
ORIENTATION_DECIMALS = 3  # direction cosines equal to 1e-3 are the same orientation
LISTED_MAX = 1000


@dataclass(frozen=True)
class SliceGeometry:
    instance_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None  # six direction cosines
    size: tuple[int, int] | None  # rows, columns


def _numbers(value: Any, count: int) -> tuple[float, ...] | None:
    if value in (None, ""):
        return None
    parts = str(value).split("\\") if not isinstance(value, list | tuple) else list(value)
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        return None
    return numbers if len(numbers) == count else None


def slice_geometry(instance: InstanceRef) -> SliceGeometry:
    attrs = instance.attrs
    position = _numbers(attrs.get("ImagePositionPatient"), 3)
    rows, columns = attrs.get("Rows"), attrs.get("Columns")
    size = (int(rows), int(columns)) if rows not in (None, "") and columns not in (None, "") else None
    return SliceGeometry(
        instance_number=instance.instance_number,
        position=position,  # type: ignore[arg-type]
        orientation=_numbers(attrs.get("ImageOrientationPatient"), 6),
        size=size,
    )


def missing_numbers(numbers: Sequence[int]) -> list[int]:
    """Instance numbers absent between the smallest and the largest present."""
    present = set(numbers)
    if not present:
        return []
    missing = (n for n in range(min(present), max(present) + 1) if n not in present)
    return [n for _, n in zip(range(LISTED_MAX), missing, strict=False)]


def spacing_check(distances: np.ndarray) -> dict[str, Any]:
    """Gaps and unevenness in the sorted slice positions `distances` (mm along the normal)."""
    ordered = np.sort(distances)
    out: dict[str, Any] = {
        "slice_spacing_mm": None,
        "spacing_min_mm": None,
        "spacing_max_mm": None,
        "gaps": [],
        "missing_slices": 0,
        "duplicate_positions": 0,
        "uneven_spacing": False,
    }
    if ordered.size < 2:
        return out
    distinct = np.concatenate(([True], np.diff(ordered) >= 1e-3))
    out["duplicate_positions"] = int((~distinct).sum())
    ordered = ordered[distinct]
    steps = np.diff(ordered)
    if steps.size == 0:
        return out
    nominal = float(np.median(steps))
    tolerance = SPACING_TOLERANCE_MM + SPACING_TOLERANCE_FRACTION * nominal
    gaps = []
    for i, step in enumerate(steps):
        if step > GAP_FACTOR * nominal:
            gaps.append(
                {
                    "after_mm": round(float(ordered[i]), 3),
                    "before_mm": round(float(ordered[i + 1]), 3),
                    "distance_mm": round(float(step), 3),
                    "missing_slices": max(1, round(float(step) / nominal) - 1),
                }
            )
    regular = steps[steps <= GAP_FACTOR * nominal]
    out.update(
        slice_spacing_mm=round(nominal, 4),
        spacing_min_mm=round(float(steps.min()), 4),
        spacing_max_mm=round(float(steps.max()), 4),
        gaps=gaps[:LISTED_MAX],
        missing_slices=sum(g["missing_slices"] for g in gaps),
        uneven_spacing=bool(regular.size and np.abs(regular - nominal).max() > tolerance),
    )
    return out


def stack_completeness(slices: Sequence[SliceGeometry]) -> dict[str, Any]:
    """The completeness facts of one stack of slices. Pure: no database, no files."""
    numbers = sorted(s.instance_number for s in slices if s.instance_number is not None)
    duplicates = sorted(n for n, c in Counter(numbers).items() if c > 1)
    orientations = Counter(
        tuple(round(v, ORIENTATION_DECIMALS) + 0.0 for v in s.orientation) for s in slices if s.orientation
    )
    sizes = Counter(s.size for s in slices if s.size)
    result: dict[str, Any] = {
        "instances": len(slices),
        "instance_number_range": [numbers[0], numbers[-1]] if numbers else None,
        "missing_instance_numbers": missing_numbers(numbers),
        "duplicate_instance_numbers": duplicates[:LISTED_MAX],
        "instances_without_number": sum(1 for s in slices if s.instance_number is None),
        "orientations": len(orientations),
        "mixed_orientations": len(orientations) > 1,
        "sizes": sorted(f"{r}x{c}" for r, c in sizes),
        "mixed_sizes": len(sizes) > 1,
    }
    geometry: dict[str, Any] = spacing_check(np.array([]))
    positioned = [s for s in slices if s.position is not None]
    if orientations and positioned:
        main = np.array(orientations.most_common(1)[0][0], dtype=np.float64)
        normal = np.cross(main[:3], main[3:])
        length = float(np.linalg.norm(normal))
        if length > 1e-6:
            normal /= length
            oriented = [s for s in positioned if s.orientation]
            cosines = np.array([s.orientation for s in oriented], dtype=np.float64).reshape(-1, 6)
            in_main = np.abs(cosines - main).max(axis=1) <= 10**-ORIENTATION_DECIMALS + 1e-9
            positions = np.array([s.position for s in oriented], dtype=np.float64).reshape(-1, 3)
            geometry = spacing_check(positions[in_main] @ normal)  # one matrix product, not a loop per slice
    result.update(geometry)
    result["complete"] = not (
        result["missing_instance_numbers"]
        or result["duplicate_instance_numbers"]
        or result["gaps"]
        or result["uneven_spacing"]
        or result["mixed_orientations"]
        or result["mixed_sizes"]
        or result["duplicate_positions"]
    )
    return result


class SeriesCompleteness:
    name = "series_completeness"
    scope = "series"

    def applies_to(self, facts: SeriesFacts) -> bool:
        return is_image_series(facts)

    def run(self, context: AnalysisContext) -> AnalyzerOutput:
        (series,) = context.series
        result = stack_completeness([slice_geometry(i) for i in series.instances])
        result["series_instance_uid"] = series.series_instance_uid
        measurements = [
            Measurement("NOC-C1", "Number of instances", result["instances"], "1", "no units"),
            Measurement("NOC-C2", "Missing instance numbers", len(result["missing_instance_numbers"]), "1", "no units"),
            Measurement("NOC-C3", "Missing slices in gaps", result["missing_slices"], "1", "no units"),
        ]
        if result["slice_spacing_mm"] is not None:
            measurements += [
                Measurement("NOC-C4", "Nominal slice spacing", result["slice_spacing_mm"], "mm", "millimeter"),
                Measurement("NOC-C5", "Largest slice spacing", result["spacing_max_mm"], "mm", "millimeter"),
            ]
        return AnalyzerOutput(
            result=result, measurements=measurements, measurement_series_uid=series.series_instance_uid
        )
