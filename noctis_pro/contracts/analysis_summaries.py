"""Short plain-text summaries of analyses, per analyzer, from the stored result JSON: the worklist's AI badge (Django),
and the `summary` and `label` of GET /api/v1/studies/{uid}/analyses that the viewer shows (FastAPI). Pure Python,
so both say the same thing from one definition.

Plain functions over the JSON (not the analyzer objects): the worklist must not load the plugin registry or ONNX
configs, and a result written by an older analyzer version must still summarise. Text only: templates escape it.
A result that does not have the expected shape gives a generic summary, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("done", "running", "pending", "failed")  # the badge's order
SUMMARY_MAX = 120  # characters of one analysis' summary
TITLE_MAX = 10  # summaries listed in a row's tooltip


def _num(value: Any, digits: int = 1) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:.{digits}f}"


def _ranges(numbers: Iterable[Any]) -> str:
    """[12, 13, 14, 20] -> "12-14, 20" (ints only; at most 5 runs then "…")."""
    values = sorted({n for n in numbers if isinstance(n, int) and not isinstance(n, bool)})
    runs: list[list[int]] = []
    for n in values:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs[:5])
    return text + (", …" if len(runs) > 5 else "")


def _inventory(r: Mapping[str, Any]) -> str:
    text = f"{r.get('series_count', '?')} series, {r.get('instance_count', '?')} images"
    gaps = [
        _ranges(s.get("instance_number_gaps") or [])
        for s in r.get("series") or []
        if isinstance(s, dict) and s.get("instance_number_gaps")
    ]
    if gaps:
        return f"{text}, gap at {'; '.join(gaps)}"
    return text + (", no gaps" if r.get("complete") else "")


def _completeness(r: Mapping[str, Any]) -> str:
    problems = []
    missing = r.get("missing_instance_numbers")
    if isinstance(missing, list) and (ranges := _ranges(missing)):
        problems.append(f"gap at {ranges}")
    if r.get("missing_slices"):
        problems.append(f"{r['missing_slices']} slice(s) missing")
    if r.get("duplicate_instance_numbers") or r.get("duplicate_positions"):
        problems.append("duplicates")
    if r.get("uneven_spacing"):
        problems.append("uneven spacing")
    if r.get("mixed_orientations"):
        problems.append("mixed orientations")
    if r.get("mixed_sizes"):
        problems.append("mixed sizes")
    if problems:
        return ", ".join(problems)
    return "complete" if r.get("complete") else f"{r.get('instances', '?')} images"


def _quality(r: Mapping[str, Any]) -> str:
    parts = []
    if (snr := _num(r.get("snr"))) is not None:
        parts.append(f"SNR {snr}")
    if (noise := _num(r.get("noise_sd"))) is not None:
        parts.append(f"noise SD {noise}")
    if (air := _num(r.get("ct_air_hu"), 0)) is not None:
        parts.append(f"air {air} HU" + ("" if r.get("ct_air_within_tolerance", True) else " (off)"))
    saturated = r.get("saturated_fraction")
    if isinstance(saturated, int | float) and saturated > 0.01:
        parts.append(f"{saturated:.0%} saturated")
    return ", ".join(parts) or "measured"


def _dose(r: Mapping[str, Any]) -> str:
    parts = []
    if (ctdi := _num(r.get("ctdivol_max_mgy"))) is not None:
        parts.append(f"CTDIvol {ctdi} mGy")
    if (dlp := _num(r.get("dlp_total_mgy_cm"))) is not None:
        parts.append(f"DLP {dlp} mGy·cm")
    return ", ".join(parts) or "no dose values"


def _model(r: Mapping[str, Any]) -> str:
    """An ONNX model (or a plugin that reports labelled outputs): its top label and score."""
    outputs = r.get("outputs")
    top = r.get("top_label")
    if isinstance(outputs, dict) and isinstance(top, str) and (score := _num(outputs.get(top), 2)) is not None:
        return f"{top} {score}"
    values = r.get("values")
    if isinstance(values, list) and values and (first := _num(values[0], 3)) is not None:
        return f"output {first}" + (f" (+{len(values) - 1})" if len(values) > 1 else "")
    return "done"


SUMMARISERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "study_inventory": _inventory,
    "series_completeness": _completeness,
    "image_quality": _quality,
    "radiation_dose": _dose,
}


LABELS = {
    "study_inventory": "inventory",
    "series_completeness": "completeness",
    "image_quality": "quality",
    "radiation_dose": "dose",
}


def analysis_label(analyzer: str) -> str:
    return LABELS.get(analyzer, analyzer)


def analysis_text(*, analyzer: str, status: str, result: Any = None, error: str = "") -> str:
    """What an analysis says, without its label: 'gap at 12-14', 'CTDIvol 12.3 mGy', 'failed (…)', 'pending'."""
    if status == "failed":
        text = f"failed ({error.splitlines()[0]})" if error.strip() else "failed"
    elif status != "done":
        text = status
    elif not isinstance(result, dict):
        text = "done"
    else:
        try:
            text = SUMMARISERS.get(analyzer, _model)(result)
        except (TypeError, ValueError, AttributeError, KeyError):  # a result of an unexpected shape
            text = "done"
    return text


def analysis_summary(
    *, analyzer: str, status: str, result: Any = None, error: str = "", series_number: int | None = None
) -> str:
    """'completeness #3: gap at 12-14', 'dose: CTDIvol 12.3 mGy', 'quality #2: failed (…)'."""
    label = analysis_label(analyzer) + (f" #{series_number}" if series_number is not None else "")
    text = f"{label}: {analysis_text(analyzer=analyzer, status=status, result=result, error=error)}"
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


@dataclass
class StudyAIStatus:
    """The analyses of one study as the worklist shows them: counts by status and one summary per analysis."""

    counts: dict[str, int] = field(default_factory=dict)
    summaries: list[str] = field(default_factory=list)

    def add(
        self, *, analyzer: str, status: str, result: Any = None, error: str = "", series_number: int | None = None
    ) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        self.summaries.append(
            analysis_summary(analyzer=analyzer, status=status, result=result, error=error, series_number=series_number)
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def state(self) -> str:
        """For styling: failed > running/pending (busy) > done; "none" when there is nothing."""
        if not self.total:
            return "none"
        if self.counts.get("failed"):
            return "failed"
        if self.counts.get("running") or self.counts.get("pending"):
            return "busy"
        return "done"

    @property
    def badge(self) -> str:
        """'AI: 3 done, 1 running, 1 failed' (statuses with no analysis left out); '' when there is none."""
        parts = [f"{self.counts[s]} {s}" for s in STATUSES if self.counts.get(s)]
        return f"AI: {', '.join(parts)}" if parts else ""

    @property
    def title(self) -> str:
        shown = self.summaries[:TITLE_MAX]
        more = len(self.summaries) - len(shown)
        return "\n".join(shown + ([f"… and {more} more"] if more > 0 else []))
