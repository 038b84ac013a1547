"""Every SQL statement FastAPI runs, with typed async wrappers. Routers call these and never build SQL.

The tables belong to Django (noctis_pro/*/migrations): pacs_patient, pacs_study, pacs_series, pacs_instance,
accounts_apitoken, core_auditevent, auth_user, auth_group, auth_user_groups and django_session. Values are
always $n binds. Optional filters are written `($n IS NULL OR ...)`; the pool sets plan_cache_mode to
force_custom_plan (main.py) so PostgreSQL plans each call with its real values and uses the indexes.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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
          WHERE ug.user_id = u.id ORDER BY g.name) AS groups,
    ARRAY(SELECT fm.facility_id FROM facilities_facility_members fm
          WHERE fm.user_id = u.id ORDER BY fm.facility_id) AS facility_ids"""

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
    facility_ids: list[int]


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
        facility_ids=list(record["facility_ids"]),
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
      AND ($7::date IS NULL OR s.study_date <= $7)
      AND ($8::bigint[] IS NULL OR COALESCE(s.facility_id, 0) = ANY($8))"""

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
    key: f"SELECT {_STUDY_COLUMNS} {_STUDY_FILTERS} ORDER BY {order} LIMIT $9 OFFSET $10"
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
    # contracts.access: None = every study; the default (nothing) is safe when a caller forgets it.
    visible_facility_ids: list[int] | None = field(default_factory=list)

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
            self.visible_facility_ids,
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


# --- DICOMweb QIDO-RS (fastapi_app/dicomweb/qido.py) ------------------------------------------------------------
# One statement per level. Every filter is optional (`$n IS NULL OR ...`, planned per call with its real values):
# the study filters are $1..$21 in all three, the series filters $22..$29 in the series and instance statements,
# the instance filters $30..$32; after limit and offset comes the facility rule (section "facilities" below).
# Exact values and LIKE patterns are separate binds so an exact value can use a
# b-tree index; patient names go through the same upper(...) trigram index as the REST study list.

_QIDO_STUDY_COLUMNS = """
    st.study_instance_uid, st.study_date, st.study_time, st.accession_number, st.study_id, st.study_description,
    st.referring_physician_name, st.institution_name, st.modalities_in_study, st.number_of_series,
    st.number_of_instances, p.patient_name, p.patient_id, p.birth_date AS patient_birth_date,
    p.sex AS patient_sex"""
_QIDO_SERIES_COLUMNS = """
    se.series_instance_uid, se.modality, se.series_number, se.series_description, se.body_part_examined,
    se.series_date, se.series_time, se.number_of_instances AS series_number_of_instances"""
_QIDO_INSTANCE_COLUMNS = """
    i.sop_instance_uid, i.sop_class_uid, i.instance_number, i.rows, i.columns, i.number_of_frames, i.attrs"""

_QIDO_STUDY_WHERE = """
        ($1::text[] IS NULL OR st.study_instance_uid = ANY($1))
    AND ($2::text IS NULL OR upper(p.patient_name) ILIKE $2)
    AND ($3::text[] IS NULL OR upper(p.patient_name) ~ ALL($3))
    AND ($4::text IS NULL OR p.patient_id = $4)
    AND ($5::text IS NULL OR p.patient_id LIKE $5)
    AND ($6::text IS NULL OR st.accession_number = $6)
    AND ($7::text IS NULL OR st.accession_number LIKE $7)
    AND ($8::date IS NULL OR st.study_date >= $8)
    AND ($9::date IS NULL OR st.study_date <= $9)
    AND ($10::time IS NULL OR st.study_time >= $10)
    AND ($11::time IS NULL OR st.study_time <= $11)
    AND ($12::text[] IS NULL OR string_to_array(st.modalities_in_study, '\\') && $12)
    AND ($13::text IS NULL OR st.modalities_in_study LIKE $13)
    AND ($14::text IS NULL OR upper(st.referring_physician_name) ILIKE $14)
    AND ($15::text[] IS NULL OR upper(st.referring_physician_name) ~ ALL($15))
    AND ($16::date IS NULL OR p.birth_date >= $16)
    AND ($17::date IS NULL OR p.birth_date <= $17)
    AND ($18::text IS NULL OR p.sex = $18)
    AND ($19::text IS NULL OR st.study_id = $19)
    AND ($20::text IS NULL OR st.study_id LIKE $20)
    AND ($21::text IS NULL OR st.study_description LIKE $21)"""

_QIDO_SERIES_WHERE = """
    AND ($22::text[] IS NULL OR se.series_instance_uid = ANY($22))
    AND ($23::text IS NULL OR se.modality = $23)
    AND ($24::text IS NULL OR se.modality LIKE $24)
    AND ($25::int IS NULL OR se.series_number = $25)
    AND ($26::text IS NULL OR se.series_description = $26)
    AND ($27::text IS NULL OR se.series_description LIKE $27)
    AND ($28::text IS NULL OR se.body_part_examined = $28)
    AND ($29::text IS NULL OR se.body_part_examined LIKE $29)"""

_QIDO_INSTANCE_WHERE = """
    AND ($30::text[] IS NULL OR i.sop_instance_uid = ANY($30))
    AND ($31::text[] IS NULL OR i.sop_class_uid = ANY($31))
    AND ($32::int IS NULL OR i.instance_number = $32)"""

# The study order is the REST list's default (index study_date_desc).
QIDO_STUDIES = f"""
    SELECT {_QIDO_STUDY_COLUMNS}
    FROM pacs_study st JOIN pacs_patient p ON p.id = st.patient_id
    WHERE {_QIDO_STUDY_WHERE}
      AND ($24::bigint[] IS NULL OR COALESCE(st.facility_id, 0) = ANY($24))
    ORDER BY st.study_date DESC, st.study_time DESC, st.id DESC
    LIMIT $22 OFFSET $23"""  # noqa: S608 (constant fragments)

QIDO_SERIES = f"""
    SELECT {_QIDO_STUDY_COLUMNS}, {_QIDO_SERIES_COLUMNS}
    FROM pacs_series se JOIN pacs_study st ON st.id = se.study_id JOIN pacs_patient p ON p.id = st.patient_id
    WHERE {_QIDO_STUDY_WHERE} {_QIDO_SERIES_WHERE}
      AND ($32::bigint[] IS NULL OR COALESCE(st.facility_id, 0) = ANY($32))
    ORDER BY st.study_date DESC, st.study_time DESC, st.id DESC, se.series_number ASC NULLS LAST, se.id ASC
    LIMIT $30 OFFSET $31"""  # noqa: S608 (constant fragments)

QIDO_INSTANCES = f"""
    SELECT {_QIDO_STUDY_COLUMNS}, {_QIDO_SERIES_COLUMNS}, {_QIDO_INSTANCE_COLUMNS}
    FROM pacs_instance i JOIN pacs_series se ON se.id = i.series_id JOIN pacs_study st ON st.id = se.study_id
         JOIN pacs_patient p ON p.id = st.patient_id
    WHERE {_QIDO_STUDY_WHERE} {_QIDO_SERIES_WHERE} {_QIDO_INSTANCE_WHERE}
      AND ($35::bigint[] IS NULL OR COALESCE(st.facility_id, 0) = ANY($35))
    ORDER BY st.study_date DESC, st.study_time DESC, st.id DESC, se.series_number ASC NULLS LAST, se.id ASC,
             i.instance_number ASC NULLS LAST, i.id ASC
    LIMIT $33 OFFSET $34"""  # noqa: S608 (constant fragments)


@dataclass(frozen=True)
class QidoFilters:
    """The binds of the QIDO statements, in bind order (field n is $n+1). None means "no condition"."""

    study_uids: list[str] | None = None
    patient_name_like: str | None = None  # upper-cased ILIKE pattern
    patient_name_words: list[str] | None = None  # upper-cased regexes, all must match (fuzzy matching)
    patient_id: str | None = None
    patient_id_like: str | None = None
    accession_number: str | None = None
    accession_number_like: str | None = None
    study_date_from: dt.date | None = None
    study_date_to: dt.date | None = None
    study_time_from: dt.time | None = None
    study_time_to: dt.time | None = None
    modalities: list[str] | None = None
    modalities_like: str | None = None  # narrows by the trigram index when one modality is asked
    referring_physician_like: str | None = None
    referring_physician_words: list[str] | None = None
    birth_date_from: dt.date | None = None
    birth_date_to: dt.date | None = None
    patient_sex: str | None = None
    study_id: str | None = None
    study_id_like: str | None = None
    study_description_like: str | None = None
    # series ($22..$29)
    series_uids: list[str] | None = None
    modality: str | None = None
    modality_like: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    series_description_like: str | None = None
    body_part_examined: str | None = None
    body_part_examined_like: str | None = None
    # instance ($30..$32)
    sop_instance_uids: list[str] | None = None
    sop_class_uids: list[str] | None = None
    instance_number: int | None = None

    def binds(self, count: int) -> tuple[Any, ...]:
        values = tuple(getattr(self, f.name) for f in fields(self))
        return values[:count]


QIDO_STATEMENTS: dict[str, tuple[str, int]] = {
    "study": (QIDO_STUDIES, 21),
    "series": (QIDO_SERIES, 29),
    "instance": (QIDO_INSTANCES, 32),
}


async def qido_search(
    pool: asyncpg.Pool,
    *,
    level: str,
    filters: QidoFilters,
    limit: int,
    offset: int,
    visible_facility_ids: list[int] | None,
) -> list[dict[str, Any]]:
    """Rows of one QIDO level ("study", "series", "instance"), as dicts keyed by the column names above, of the
    studies in `visible_facility_ids` (contracts.access; the bind after limit and offset)."""
    statement, count = QIDO_STATEMENTS[level]
    records = await pool.fetch(statement, *filters.binds(count), limit, offset, visible_facility_ids)
    return [dict(r) for r in records]


# --- DICOMweb WADO-RS (fastapi_app/dicomweb/wado.py) ------------------------------------------------------------

WADO_INSTANCES = """
    SELECT st.study_instance_uid, se.series_instance_uid, i.sop_instance_uid, i.path, i.transfer_syntax_uid,
           i.size_bytes, i.digest, i.number_of_frames, i.rows
    FROM pacs_study st JOIN pacs_series se ON se.study_id = st.id JOIN pacs_instance i ON i.series_id = se.id
    WHERE st.study_instance_uid = $1
      AND ($2::text IS NULL OR se.series_instance_uid = $2)
      AND ($3::text IS NULL OR i.sop_instance_uid = $3)
    ORDER BY se.series_number ASC NULLS LAST, se.id ASC, i.instance_number ASC NULLS LAST, i.id ASC"""


@dataclass(frozen=True)
class StoredInstance:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    path: str  # relative to STORAGE_ROOT
    transfer_syntax_uid: str
    size_bytes: int
    digest: str  # "<algorithm>:<hex>" of the file (noctis_pro.contracts.receipt)
    number_of_frames: int | None
    rows: int | None  # None: no image (a report, a presentation state)


async def instances_for_retrieve(
    pool: asyncpg.Pool, *, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> list[StoredInstance]:
    """The stored files of a study, or of one of its series, or one instance, in series and instance order."""
    records = await pool.fetch(WADO_INSTANCES, study_uid, series_uid, sop_uid)
    return [StoredInstance(**dict(r)) for r in records]


# --- DICOMweb metadata cache (pacs_seriesmetadata, built by noctis_pro/pacs/metadata.py) --------------------------
# A series' row is current while its stamp equals the series (updated_at and number_of_instances change whenever
# indexing touches it); otherwise the metadata is read from the files.

METADATA_SERIES_PLAN = """
    SELECT se.id AS series_id, se.series_instance_uid,
           (sm.series_id IS NOT NULL AND sm.series_updated_at = se.updated_at
            AND sm.instance_count = se.number_of_instances) AS cached
    FROM pacs_study st JOIN pacs_series se ON se.study_id = st.id
         LEFT JOIN pacs_seriesmetadata sm ON sm.series_id = se.id
    WHERE st.study_instance_uid = $1 AND ($2::text IS NULL OR se.series_instance_uid = $2)
    ORDER BY se.series_number ASC NULLS LAST, se.id ASC"""

METADATA_SERIES_DATA = """
    SELECT sm.data FROM pacs_seriesmetadata sm JOIN pacs_series se ON se.id = sm.series_id
    WHERE sm.series_id = $1 AND sm.series_updated_at = se.updated_at AND sm.instance_count = se.number_of_instances"""


@dataclass(frozen=True)
class MetadataSeries:
    series_id: int
    series_instance_uid: str
    cached: bool  # a current cache row exists


async def metadata_plan(pool: asyncpg.Pool, *, study_uid: str, series_uid: str | None) -> list[MetadataSeries]:
    """The series of a study (or one of them) in retrieve order, each saying whether its cached metadata is current."""
    records = await pool.fetch(METADATA_SERIES_PLAN, study_uid, series_uid)
    return [MetadataSeries(**dict(r)) for r in records]


async def metadata_cached(pool: asyncpg.Pool, *, series_id: int) -> bytes | None:
    """The series' gzip-compressed metadata if still current (one read), else None."""
    data = await pool.fetchval(METADATA_SERIES_DATA, series_id)
    return None if data is None else bytes(data)


# --- facilities: who may see a study (noctis_pro.contracts.access) -------------------------------------------------
# Every study statement above that lists or finds studies takes the visible facility ids as one bigint[] bind:
# NULL = everything (admins); 0 in the list stands for studies without a facility.

STUDY_FACILITY = "SELECT facility_id FROM pacs_study WHERE study_instance_uid = $1"
SERIES_STUDY_FACILITY = """
    SELECT st.facility_id FROM pacs_series se JOIN pacs_study st ON st.id = se.study_id
    WHERE se.series_instance_uid = $1"""


@dataclass(frozen=True)
class Found:
    """A look-up's answer: whether the row exists, and its facility (None: unassigned)."""

    exists: bool
    facility_id: int | None


async def study_facility(pool: asyncpg.Pool, *, study_uid: str) -> Found:
    record = await pool.fetchrow(STUDY_FACILITY, study_uid)
    return Found(exists=record is not None, facility_id=None if record is None else record["facility_id"])


async def series_facility(pool: asyncpg.Pool, *, series_uid: str) -> Found:
    record = await pool.fetchrow(SERIES_STUDY_FACILITY, series_uid)
    return Found(exists=record is not None, facility_id=None if record is None else record["facility_id"])


# --- nodes and transfers (routers/nodes.py; tables pacs_node, pacs_forwardrule, pacs_transfer) -----------------
# Django's models give the capabilities and most transfer columns database defaults, so these inserts name only
# what they set. Node deletes do here what Django's on_delete does: rules go, transfers keep the node's name.

_NODE_COLUMNS = """
    id, name, ae_title, host, port, enabled, may_store, may_query, may_retrieve, may_receive,
    last_success_at, last_error, created_at"""

NODES_LIST = f"SELECT {_NODE_COLUMNS} FROM pacs_node ORDER BY name"  # noqa: S608 (constant fragment)
NODE_BY_ID = f"SELECT {_NODE_COLUMNS} FROM pacs_node WHERE id = $1"  # noqa: S608 (constant fragment)
NODE_INSERT = f"""
    INSERT INTO pacs_node (name, ae_title, host, port, enabled, may_store, may_query, may_retrieve, may_receive,
                           last_error, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '', now())
    RETURNING {_NODE_COLUMNS}"""  # noqa: S608 (constant fragment)
NODE_UPDATE = f"""
    UPDATE pacs_node SET name = $2, ae_title = $3, host = $4, port = $5, enabled = $6, may_store = $7,
                         may_query = $8, may_retrieve = $9, may_receive = $10
    WHERE id = $1
    RETURNING {_NODE_COLUMNS}"""  # noqa: S608 (constant fragment)
NODE_RULES_DELETE = "DELETE FROM pacs_forwardrule WHERE node_id = $1"
NODE_TRANSFERS_DETACH = "UPDATE pacs_transfer SET node_id = NULL WHERE node_id = $1"
NODE_DELETE = "DELETE FROM pacs_node WHERE id = $1"

STUDY_SERIES_EXISTS = """
    SELECT st.id AS study_id,
           ($2::text IS NULL OR EXISTS (SELECT 1 FROM pacs_series se
                                        WHERE se.study_id = st.id AND se.series_instance_uid = $2)) AS series_found
    FROM pacs_study st WHERE st.study_instance_uid = $1"""

_TRANSFER_COLUMNS = """
    id, kind, status, node_id, node_name, study_instance_uid, series_instance_uid,
    jsonb_array_length(sop_instance_uids) AS instances_listed, requested_by_id, total, completed, failed, attempts,
    error, created_at, started_at, finished_at, updated_at"""
TRANSFER_INSERT = f"""
    INSERT INTO pacs_transfer (kind, node_id, node_name, study_instance_uid, series_instance_uid, requested_by_id)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING {_TRANSFER_COLUMNS}"""  # noqa: S608 (constant fragment)
TRANSFER_BY_ID = f"SELECT {_TRANSFER_COLUMNS} FROM pacs_transfer WHERE id = $1"  # noqa: S608 (constant fragment)
# $1 status, $2 node id, $3 study UID, $4 kind (each NULL = any); served by transfer_created_desc.
TRANSFERS_LIST = f"""
    SELECT {_TRANSFER_COLUMNS} FROM pacs_transfer
    WHERE ($1::text IS NULL OR status = $1) AND ($2::bigint IS NULL OR node_id = $2)
      AND ($3::text IS NULL OR study_instance_uid = $3) AND ($4::text IS NULL OR kind = $4)
    ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6"""  # noqa: S608 (constant fragment)
TRANSFER_ENQUEUE_FAILED = """
    UPDATE pacs_transfer SET status = 'failed', error = $2, finished_at = now(), updated_at = now() WHERE id = $1"""


@dataclass(frozen=True)
class NodeRow:
    id: int
    name: str
    ae_title: str
    host: str
    port: int
    enabled: bool
    may_store: bool
    may_query: bool
    may_retrieve: bool
    may_receive: bool
    last_success_at: dt.datetime | None
    last_error: str
    created_at: dt.datetime


@dataclass(frozen=True)
class NodeValues:
    name: str
    ae_title: str
    host: str
    port: int
    enabled: bool
    may_store: bool
    may_query: bool
    may_retrieve: bool
    may_receive: bool

    def binds(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class TransferRow:
    id: int
    kind: str
    status: str
    node_id: int | None
    node_name: str
    study_instance_uid: str
    series_instance_uid: str
    instances_listed: int
    requested_by_id: int | None
    total: int | None
    completed: int
    failed: int
    attempts: int
    error: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime


async def nodes_list(pool: asyncpg.Pool) -> list[NodeRow]:
    return [NodeRow(**dict(r)) for r in await pool.fetch(NODES_LIST)]


async def node_by_id(pool: asyncpg.Pool, *, node_id: int) -> NodeRow | None:
    record = await pool.fetchrow(NODE_BY_ID, node_id)
    return None if record is None else NodeRow(**dict(record))


async def node_insert(pool: asyncpg.Pool, values: NodeValues) -> NodeRow:
    """asyncpg.UniqueViolationError when the name or AE title is taken."""
    return NodeRow(**dict(await pool.fetchrow(NODE_INSERT, *values.binds())))


async def node_update(pool: asyncpg.Pool, *, node_id: int, values: NodeValues) -> NodeRow | None:
    record = await pool.fetchrow(NODE_UPDATE, node_id, *values.binds())
    return None if record is None else NodeRow(**dict(record))


async def node_delete(pool: asyncpg.Pool, *, node_id: int) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(NODE_RULES_DELETE, node_id)
        await conn.execute(NODE_TRANSFERS_DETACH, node_id)
        status = await conn.execute(NODE_DELETE, node_id)
    return status.endswith(" 1")


async def study_series_exist(pool: asyncpg.Pool, *, study_uid: str, series_uid: str | None) -> tuple[bool, bool]:
    """(study found, series found in it or not asked)."""
    record = await pool.fetchrow(STUDY_SERIES_EXISTS, study_uid, series_uid)
    return (False, False) if record is None else (True, bool(record["series_found"]))


async def transfer_insert(
    pool: asyncpg.Pool, *, kind: str, node: NodeRow, study_uid: str, series_uid: str, user_id: int
) -> TransferRow:
    record = await pool.fetchrow(TRANSFER_INSERT, kind, node.id, node.name, study_uid, series_uid, user_id)
    return TransferRow(**dict(record))


async def transfer_by_id(pool: asyncpg.Pool, *, transfer_id: int) -> TransferRow | None:
    record = await pool.fetchrow(TRANSFER_BY_ID, transfer_id)
    return None if record is None else TransferRow(**dict(record))


async def transfers_list(
    pool: asyncpg.Pool,
    *,
    status: str | None,
    node_id: int | None,
    study_uid: str | None,
    kind: str | None,
    limit: int,
    offset: int,
) -> list[TransferRow]:
    records = await pool.fetch(TRANSFERS_LIST, status, node_id, study_uid, kind, limit, offset)
    return [TransferRow(**dict(r)) for r in records]


async def transfer_enqueue_failed(pool: asyncpg.Pool, *, transfer_id: int, error: str) -> None:
    await pool.execute(TRANSFER_ENQUEUE_FAILED, transfer_id, error)


# --- exports (exports_export; built by the Celery task noctis_pro.exports.tasks.export_build_task) --------------

EXPORT_VISIBLE_STUDIES = """
    SELECT study_instance_uid FROM pacs_study
    WHERE study_instance_uid = ANY($1::text[])
      AND ($2::bigint[] IS NULL OR COALESCE(facility_id, 0) = ANY($2::bigint[]))"""

EXPORT_INSERT = """
    INSERT INTO exports_export (id, requested_by_id, study_uids, status, instances_total, instances_done,
                                instances_skipped, attempts, error, created_at, expires_at)
    VALUES ($1, $2, $3::jsonb, 'pending', 0, 0, 0, 0, '', now(), now() + make_interval(hours => $4))
    RETURNING *"""

EXPORT_BY_ID = "SELECT * FROM exports_export WHERE id = $1"

EXPORTS_OF_USER = "SELECT * FROM exports_export WHERE requested_by_id = $1 ORDER BY created_at DESC LIMIT $2"


async def export_visible_studies(
    pool: asyncpg.Pool, *, study_uids: list[str], facility_ids: list[int] | None
) -> set[str]:
    rows = await pool.fetch(EXPORT_VISIBLE_STUDIES, study_uids, facility_ids)
    return {r["study_instance_uid"] for r in rows}


async def export_insert(
    pool: asyncpg.Pool, *, export_id: uuid.UUID, user_id: int, study_uids: list[str], ttl_hours: int
) -> asyncpg.Record:
    return await pool.fetchrow(EXPORT_INSERT, export_id, user_id, json.dumps(study_uids), ttl_hours)


async def export_by_id(pool: asyncpg.Pool, *, export_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(EXPORT_BY_ID, export_id)


async def exports_of_user(pool: asyncpg.Pool, *, user_id: int, limit: int = 50) -> list[asyncpg.Record]:
    return await pool.fetch(EXPORTS_OF_USER, user_id, limit)


# --- AI analyses (ai_analysis, ai_analysisrule; Django's noctis_pro/ai owns them) ------------------------------

_ANALYSIS_COLUMNS = """
    a.id, a.analyzer, a.status, a.attempts, a.max_attempts, a.requested_by, a.result, a.error, a.created_at,
    a.started_at, a.finished_at, a.duration_ms, se.series_instance_uid"""

ANALYSES_OF_STUDY = f"""
    SELECT {_ANALYSIS_COLUMNS}
    FROM ai_analysis a JOIN pacs_study s ON s.id = a.study_id LEFT JOIN pacs_series se ON se.id = a.series_id
    WHERE s.study_instance_uid = $1
    ORDER BY a.created_at DESC, a.id DESC LIMIT $2"""  # noqa: S608 (constant fragment)

ANALYSIS_STUDY_ID = "SELECT id FROM pacs_study WHERE study_instance_uid = $1"

# One pending row for the study ($3 NULL) or per image series of it ($3 true: every series, or only $4's), unless
# the same (study, series, analyzer) already waits. Non-image series are left out (the processor would refuse them).
ANALYSES_REQUEST = """
    INSERT INTO ai_analysis (study_id, series_id, analyzer, status, attempts, max_attempts, worker, requested_by,
                             result, error, created_at)
    SELECT $1::bigint, t.series_id, $2::text, 'pending', 0, 3, '', $5::text, NULL, '', now()
    FROM (SELECT NULL::bigint AS series_id WHERE $3::boolean IS NOT TRUE
          UNION ALL
          SELECT se.id FROM pacs_series se
          WHERE $3::boolean AND se.study_id = $1::bigint AND ($4::text IS NULL OR se.series_instance_uid = $4)
            AND upper(se.modality) <> ALL($6::text[])) t
    WHERE NOT EXISTS (SELECT 1 FROM ai_analysis w WHERE w.study_id = $1::bigint AND w.analyzer = $2::text
                      AND w.series_id IS NOT DISTINCT FROM t.series_id AND w.status = 'pending')
    RETURNING id"""

ANALYSES_PENDING_OF = f"""
    SELECT {_ANALYSIS_COLUMNS}
    FROM ai_analysis a LEFT JOIN pacs_series se ON se.id = a.series_id
    WHERE a.study_id = $1 AND a.analyzer = $2 AND a.status = 'pending' ORDER BY a.id"""  # noqa: S608 (constant)


async def analyses_of_study(pool: asyncpg.Pool, *, study_uid: str, limit: int = 200) -> list[asyncpg.Record]:
    return await pool.fetch(ANALYSES_OF_STUDY, study_uid, limit)


async def analysis_study_id(pool: asyncpg.Pool, *, study_uid: str) -> int | None:
    return await pool.fetchval(ANALYSIS_STUDY_ID, study_uid)


async def analyses_request(
    pool: asyncpg.Pool,
    *,
    study_id: int,
    analyzer: str,
    per_series: bool,
    series_uid: str | None,
    requested_by: str,
    non_image_modalities: list[str],
) -> tuple[int, list[asyncpg.Record]]:
    """Queue the analysis (or one per series); (how many were new, the pending rows of that analyzer)."""
    async with pool.acquire() as conn, conn.transaction():
        created = await conn.fetch(
            ANALYSES_REQUEST, study_id, analyzer, per_series, series_uid, requested_by[:160], non_image_modalities
        )
        rows = await conn.fetch(ANALYSES_PENDING_OF, study_id, analyzer)
    return len(created), rows
