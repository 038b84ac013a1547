"""Response models of the JSON REST API (they are what OpenAPI documents)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(_FromRow):
    id: int
    username: str
    is_superuser: bool
    is_staff: bool
    groups: list[str]


class StudyOut(_FromRow):
    study_instance_uid: str
    patient_name: str
    patient_id: str
    patient_birth_date: dt.date | None
    patient_sex: str
    study_date: dt.date | None
    study_time: dt.time | None
    accession_number: str
    study_description: str
    referring_physician_name: str
    modalities: list[str]
    number_of_series: int
    number_of_instances: int
    received_at: dt.datetime


class StudyPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[StudyOut]


class SeriesOut(_FromRow):
    series_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    number_of_instances: int
    has_thumbnail: bool


class StudyDetail(StudyOut):
    series: list[SeriesOut]


class InstanceOut(_FromRow):
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    transfer_syntax_uid: str
    rows: int | None
    columns: int | None
    number_of_frames: int | None
    size_bytes: int


class SeriesInstancesOut(_FromRow):
    study_instance_uid: str
    series_instance_uid: str
    instances: list[InstanceOut]


class ErrorOut(BaseModel):
    detail: str
