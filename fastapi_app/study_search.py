"""Turning the worklist's query parameters into a sql.StudyQuery: DICOM wildcards, DICOM dates, the sort whitelist."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from fastapi_app import sql
from fastapi_app.errors import InvalidRequestError

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
DEFAULT_SORT = "-study_date"
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d")
_MODALITY_RE = re.compile(r"^[A-Z0-9_]{1,16}$")


def dicom_name_pattern(value: str) -> str:
    """A DICOM PN match value as an upper-case ILIKE pattern: `*` any run, `?` one character, the rest literal.

    Without wildcards the pattern matches the whole name (DICOM single-value matching), case-insensitively.
    """
    escaped = value.upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def dicom_date_parse(name: str, value: str) -> dt.date:
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise InvalidRequestError(f"{name} {value!r} is not a date (YYYY-MM-DD or YYYYMMDD)")


def study_query_build(
    *,
    patient_name: str | None = None,
    patient_id: str | None = None,
    accession_number: str | None = None,
    modality: str | None = None,
    study_date_from: str | None = None,
    study_date_to: str | None = None,
    sort: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    visible_facility_ids: Sequence[int] | None = (),  # contracts.access; the default shows nothing
) -> sql.StudyQuery:
    sort_key = sort or DEFAULT_SORT
    if sort_key not in sql.STUDY_SORTS:
        allowed = ", ".join(k for k in sql.STUDY_SORTS if not k.startswith("-"))
        raise InvalidRequestError(f"unknown sort {sort_key!r}: use one of {allowed}, with '-' for descending")
    if modality is not None:
        modality = modality.strip().upper()
        if not _MODALITY_RE.fullmatch(modality):
            raise InvalidRequestError(f"modality {modality!r} is not a DICOM modality code")
    return sql.StudyQuery(
        name_pattern=dicom_name_pattern(patient_name) if patient_name else None,
        patient_id=patient_id or None,
        accession_number=accession_number or None,
        modality=modality or None,
        date_from=dicom_date_parse("study_date_from", study_date_from) if study_date_from else None,
        date_to=dicom_date_parse("study_date_to", study_date_to) if study_date_to else None,
        sort=sort_key,
        limit=limit,
        offset=offset,
        visible_facility_ids=None if visible_facility_ids is None else list(visible_facility_ids),
    )


def total_without_count(*, limit: int, offset: int, returned: int) -> int | None:
    """The total when the page itself proves it (a short page that is not empty, or an empty first page)."""
    if returned < limit and (returned > 0 or offset == 0):
        return offset + returned
    return None
