"""Every SQL statement FastAPI runs, with typed async wrappers. Routers call these and never build SQL.

The tables belong to Django (noctis_pro/*/migrations): pacs_patient, pacs_study, pacs_series, pacs_instance,
accounts_apitoken, core_auditevent, auth_user, auth_group, auth_user_groups and django_session. Values are
always $n binds. Optional filters are written `($n IS NULL OR ...)`; the pool sets plan_cache_mode to
force_custom_plan (main.py) so PostgreSQL plans each call with its real values and uses the indexes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

# --- health -----------------------------------------------------------------------------------------------

PING = "SELECT 1"


async def database_ping(pool: asyncpg.Pool) -> None:
    await pool.fetchval(PING)


# --- identity (Django's auth_user, accounts_apitoken, django_session) ------------------------------------------

_USER_COLUMNS = """
    u.id, u.username, u.is_superuser, u.is_staff, u.password,
    ARRAY(SELECT g.name FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
          WHERE ug.user_id = u.id ORDER BY g.name) AS groups"""

USER_BY_TOKEN_HASH = f"""
    SELECT t.id AS token_id, t.last_used_at, {_USER_COLUMNS}
    FROM accounts_apitoken t JOIN auth_user u ON u.id = t.user_id
    WHERE t.key_hash = $1 AND t.revoked_at IS NULL AND u.is_active"""  # noqa: S608 (constant fragment)

# Conditional, so concurrent requests with one token write at most once a minute.
APITOKEN_LAST_USED_SET = """
    UPDATE accounts_apitoken SET last_used_at = now()
    WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"""

USER_ACTIVE_BY_ID = f"""
    SELECT {_USER_COLUMNS}
    FROM auth_user u WHERE u.id = $1 AND u.is_active"""  # noqa: S608 (constant fragment)

SESSION_DATA = "SELECT session_data FROM django_session WHERE session_key = $1 AND expire_date > now()"


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    is_superuser: bool
    is_staff: bool
    password: str
    groups: list[str]


@dataclass(frozen=True)
class TokenUserRow:
    token_id: int
    last_used_at: dt.datetime | None
    user: UserRow


def _user(record: asyncpg.Record) -> UserRow:
    return UserRow(
        id=record["id"],
        username=record["username"],
        is_superuser=record["is_superuser"],
        is_staff=record["is_staff"],
        password=record["password"],
        groups=list(record["groups"]),
    )


async def user_by_token_hash(pool: asyncpg.Pool, *, key_hash: str) -> TokenUserRow | None:
    record = await pool.fetchrow(USER_BY_TOKEN_HASH, key_hash)
    if record is None:
        return None
    return TokenUserRow(token_id=record["token_id"], last_used_at=record["last_used_at"], user=_user(record))


async def token_touch(pool: asyncpg.Pool, *, token_id: int) -> None:
    await pool.execute(APITOKEN_LAST_USED_SET, token_id)


async def user_active_by_id(pool: asyncpg.Pool, *, user_id: int) -> UserRow | None:
    record = await pool.fetchrow(USER_ACTIVE_BY_ID, user_id)
    return None if record is None else _user(record)


async def session_data(pool: asyncpg.Pool, *, session_key: str) -> str | None:
    """The signed payload of an unexpired Django session, or None."""
    value = await pool.fetchval(SESSION_DATA, session_key)
    return None if value is None else str(value)


# --- studies ------------------------------------------------------------------------------------------------

_STUDY_COLUMNS = """
    s.study_instance_uid, p.patient_name, p.patient_id, p.birth_date AS patient_birth_date, p.sex AS patient_sex,
    s.study_date, s.study_time, s.accession_number, s.study_description, s.referring_physician_name,
    s.modalities_in_study, s.number_of_series, s.number_of_instances, s.received_at"""

# $1 upper-cased ILIKE pattern for the name (served by the trigram index on Upper(patient_name)),
# $2 patient id, $3 accession number, $4 modality and $5 its LIKE pattern (the LIKE lets the trigram index on
# modalities_in_study narrow the rows, the ANY makes "CT" not match "CTX"), $6/$7 study date range.
_STUDY_FILTERS = """
    FROM pacs_study s JOIN pacs_patient p ON p.id = s.patient_id
    WHERE ($1::text IS NULL OR upper(p.patient_name) ILIKE $1)
      AND ($2::text IS NULL OR p.patient_id = $2)
      AND ($3::text IS NULL OR s.accession_number = $3)
      AND ($4::text IS NULL OR (s.modalities_in_study LIKE $5
                                AND $4 = ANY(string_to_array(s.modalities_in_study, '\\'))))
      AND ($6::date IS NULL OR s.study_date >= $6)
      AND ($7::date IS NULL OR s.study_date <= $7)"""

# The whitelist of sort keys; the orders match the indexes study_date_desc, study_received_desc, study_accession.
STUDY_SORTS: dict[str, str] = {
    "study_date": "s.study_date ASC, s.study_time ASC, s.id ASC",
    "-study_date": "s.study_date DESC, s.study_time DESC, s.id DESC",
    "received_at": "s.received_at ASC, s.id ASC",
    "-received_at": "s.received_at DESC, s.id DESC",
    "accession_number": "s.accession_number ASC, s.id ASC",
    "-accession_number": "s.accession_number DESC, s.id DESC",
    "patient_name": "p.patient_name ASC, s.id ASC",
    "-patient_name": "p.patient_name DESC, s.id DESC",
}

# One named statement per sort key, built once from constants (never from a request).
STUDIES_SEARCH: dict[str, str] = {
    key: f"SELECT {_STUDY_COLUMNS} {_STUDY_FILTERS} ORDER BY {order} LIMIT $8 OFFSET $9"
    for key, order in STUDY_SORTS.items()
}
STUDIES_COUNT = f"SELECT count(*) {_STUDY_FILTERS}"

STUDY_BY_UID = f"""
    SELECT s.id, {_STUDY_COLUMNS}
    FROM pacs_study s JOIN pacs_patient p ON p.id = s.patient_id
    WHERE s.study_instance_uid = $1"""  # noqa: S608 (constant fragment)

SERIES_OF_STUDY = """
    SELECT series_instance_uid, modality, series_number, series_description, body_part_examined,
           number_of_instances, thumbnail <> '' AS has_thumbnail
    FROM pacs_series WHERE study_id = $1
    ORDER BY series_number ASC NULLS LAST, id ASC"""


@dataclass(frozen=True)
class StudyQuery:
    name_pattern: str | None = None  # an upper-cased ILIKE pattern (see routers.studies.dicom_pattern)
    patient_id: str | None = None
    accession_number: str | None = None
    modality: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    sort: str = "-study_date"
    limit: int = 50
    offset: int = 0

    def filter_binds(self) -> tuple[Any, ...]:
        modality_like = None if self.modality is None else "%" + _like_escape(self.modality) + "%"
        return (
            self.name_pattern,
            self.patient_id,
            self.accession_number,
            self.modality,
            modality_like,
            self.date_from,
            self.date_to,
        )


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class StudyRow:
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


def _study(record: asyncpg.Record) -> StudyRow:
    values = dict(record)
    values.pop("id", None)
    modalities = values.pop("modalities_in_study") or ""
    return StudyRow(**values, modalities=[m for m in modalities.split("\\") if m])


async def studies_search(pool: asyncpg.Pool, q: StudyQuery) -> list[StudyRow]:
    records = await pool.fetch(STUDIES_SEARCH[q.sort], *q.filter_binds(), q.limit, q.offset)
    return [_study(r) for r in records]


async def studies_count(pool: asyncpg.Pool, q: StudyQuery) -> int:
    return int(await pool.fetchval(STUDIES_COUNT, *q.filter_binds()))


@dataclass(frozen=True)
class SeriesRow:
    series_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    number_of_instances: int
    has_thumbnail: bool


async def study_with_series(pool: asyncpg.Pool, *, study_uid: str) -> tuple[StudyRow, list[SeriesRow]] | None:
    async with pool.acquire() as conn:
        record = await conn.fetchrow(STUDY_BY_UID, study_uid)
        if record is None:
            return None
        series = await conn.fetch(SERIES_OF_STUDY, record["id"])
    return _study(record), [SeriesRow(**dict(r)) for r in series]


# --- instances ----------------------------------------------------------------------------------------------

SERIES_BY_UID = """
    SELECT se.id, se.series_instance_uid, st.study_instance_uid
    FROM pacs_series se JOIN pacs_study st ON st.id = se.study_id
    WHERE se.series_instance_uid = $1"""

INSTANCES_OF_SERIES = """
    SELECT sop_instance_uid, sop_class_uid, instance_number, transfer_syntax_uid, rows, columns,
           number_of_frames, size_bytes
    FROM pacs_instance WHERE series_id = $1
    ORDER BY instance_number ASC NULLS LAST, id ASC"""


@dataclass(frozen=True)
class InstanceRow:
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    transfer_syntax_uid: str
    rows: int | None
    columns: int | None
    number_of_frames: int | None
    size_bytes: int


@dataclass(frozen=True)
class SeriesInstances:
    study_instance_uid: str
    series_instance_uid: str
    instances: list[InstanceRow]


async def series_instances(pool: asyncpg.Pool, *, series_uid: str) -> SeriesInstances | None:
    async with pool.acquire() as conn:
        series = await conn.fetchrow(SERIES_BY_UID, series_uid)
        if series is None:
            return None
        records = await conn.fetch(INSTANCES_OF_SERIES, series["id"])
    return SeriesInstances(
        study_instance_uid=series["study_instance_uid"],
        series_instance_uid=series["series_instance_uid"],
        instances=[InstanceRow(**dict(r)) for r in records],
    )


# --- audit (core_auditevent; Django writes it through noctis_pro.core.audit) ----------------------------------

AUDIT_INSERT = """
    INSERT INTO core_auditevent (at, user_id, username, action, object_type, object_id, remote_addr, detail)
    VALUES (now(), $1, $2, $3, $4, $5, $6, $7::jsonb)"""


async def audit_record(
    pool: asyncpg.Pool,
    *,
    user_id: int | None,
    username: str,
    action: str,
    object_type: str,
    object_id: str,
    remote_addr: str,
    detail: Mapping[str, object] | None = None,
) -> None:
    await pool.execute(
        AUDIT_INSERT,
        user_id,
        username[:150],
        action,
        object_type[:32],
        object_id[:128],
        remote_addr[:64],
        json.dumps(dict(detail or {})),
    )
