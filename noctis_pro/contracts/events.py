"""Events published on Redis by Django and relayed unchanged to browsers by FastAPI's /ws."""

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

CHANNEL = "noctis:events"


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class StudyUpdated(Event):
    type: ClassVar[str] = "study.updated"
    study_instance_uid: str
    number_of_series: int
    number_of_instances: int
    modalities: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AnalysisCompleted(Event):
    type: ClassVar[str] = "analysis.completed"
    analysis_id: int
    study_instance_uid: str
    analyzer: str
    status: str


@dataclass(frozen=True)
class TaskEcho(Event):
    """Published by the `ping` Celery task: proves a task round-tripped through a worker."""

    type: ClassVar[str] = "task.echo"
    token: str


@dataclass(frozen=True)
class ReportSigned(Event):
    """A radiologist signed a study's report (reports.services.report_sign); the study is now `status`."""

    type: ClassVar[str] = "report.signed"
    study_instance_uid: str
    report_id: int
    signed_by: str
    status: str


@dataclass(frozen=True)
class TransferUpdated(Event):
    """A send, forward or retrieve with a DICOM node moved on (pacs.transfers): its status and counts so far."""

    type: ClassVar[str] = "transfer.updated"
    transfer_id: int
    kind: str
    status: str
    node_name: str
    study_instance_uid: str
    total: int | None
    completed: int
    failed: int
    error: str = ""
