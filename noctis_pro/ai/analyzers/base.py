"""The analyzer plugin interface: what `process_ai_analyses` hands an analyzer and what it takes back.

An analyzer is any object with
- `name`: the AIAnalysis.analyzer value (and the name rules and the API use),
- `scope`: "study" (one analysis per study) or "series" (one per matching series),
- `applies_to(facts) -> bool`: whether a series (its modality, body part, SOP classes) is something it can read,
- `run(context) -> AnalyzerOutput`: the result as JSON, plus optional measurements (written back as a TID 1500
  measurement report SR when AI_SR_WRITEBACK is on) and optional DICOM datasets to archive.
Raising means the attempt failed; the processor retries while attempts remain. Analyzers compute checkable facts;
none pretends to diagnose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydicom.dataset import Dataset

Scope = Literal["study", "series"]
# Codes of our own measurements ("99" prefix: a private coding scheme, PS3.16 8.2).
PRIVATE_SCHEME = "99NOCTIS"


@dataclass(frozen=True)
class SeriesFacts:
    """What a rule and `applies_to` see of a series."""

    modality: str
    body_part: str = ""
    sop_class_uids: frozenset[str] = frozenset()
    calling_ae: str = ""


@dataclass(frozen=True)
class InstanceRef:
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    path: Path  # absolute
    attrs: dict[str, Any]  # the receipt's extracted attributes (contracts.receipt.ATTR_KEYWORDS)


@dataclass(frozen=True)
class SeriesRef:
    series_id: int
    series_instance_uid: str
    modality: str
    body_part: str
    series_number: int | None
    instances: Sequence[InstanceRef]  # ordered by instance number

    @property
    def facts(self) -> SeriesFacts:
        return SeriesFacts(
            modality=self.modality,
            body_part=self.body_part,
            sop_class_uids=frozenset(i.sop_class_uid for i in self.instances),
        )


@dataclass(frozen=True)
class AnalysisContext:
    analysis_id: int
    analyzer: str
    study_id: int
    study_instance_uid: str
    series_id: int | None  # set for a series-scoped analysis
    series: Sequence[SeriesRef]  # the one series, or every series of the study


@dataclass(frozen=True)
class Measurement:
    """A number to write into the measurement report: concept (code, meaning), value and UCUM unit."""

    code: str
    meaning: str
    value: float
    unit: str  # UCUM code: "mm", "[hnsf'U]", "1", "mGy", "mGy.cm", "{ratio}"
    unit_meaning: str
    scheme: str = PRIVATE_SCHEME


@dataclass
class AnalyzerOutput:
    result: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)
    measurement_series_uid: str | None = None  # the series the measurements describe (its images are the evidence)
    datasets: list[Dataset] = field(default_factory=list)


class Analyzer(Protocol):
    name: str
    scope: Scope

    def applies_to(self, facts: SeriesFacts) -> bool: ...

    def run(self, context: AnalysisContext) -> AnalyzerOutput: ...


class PermanentError(ValueError):
    """A failure that no retry fixes (bad configuration, data the analyzer cannot read): failed at once."""


class NotApplicableError(PermanentError):
    """The data is not something this analyzer reads (a report series for an image analyzer, ...)."""
