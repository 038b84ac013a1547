"""The single indexing path: receipts (the outbox the SCP and STOW-RS write) become Patient/Study/Series/Instance.

The webhook, the reconciler task and (through the webhook) STOW-RS all end in `receipts_index`. One transaction
per batch; a fixed number of queries per batch (no query per instance); idempotent on SOP Instance UID.
Events and Celery work go out only after the commit.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from noctis_pro.contracts.events import CHANNEL, StudyUpdated
from noctis_pro.contracts.uids import uid_problem
from noctis_pro.core.events import redis_client
from noctis_pro.pacs import dicom_values as dv
from noctis_pro.pacs.forwarding import forward_plan
from noctis_pro.pacs.metadata import (
    METADATA_PENDING_KEY,
    METADATA_PENDING_TTL,
    series_metadata,
    series_metadata_send,
)
from noctis_pro.pacs.models import Patient, Receipt, Series, Study
from noctis_pro.pacs.signals import studies_indexed

logger = logging.getLogger(__name__)

THUMBNAIL_PENDING_KEY = "noctis:thumbnail-pending:{}"
THUMBNAIL_PENDING_TTL = 60  # seconds; only matters if the queued task is lost
THUMBNAIL_DELAY_SECONDS = 2


@dataclass
class IndexResult:
    indexed: list[int] = field(default_factory=list)  # receipt ids indexed by this call
    skipped: list[int] = field(default_factory=list)  # unknown, already indexed, or locked by another indexer
    failed: dict[int, str] = field(default_factory=dict)  # receipt id -> why its data is unusable
    studies: list[str] = field(default_factory=list)  # Study Instance UIDs touched

    def merge(self, other: IndexResult) -> None:
        self.indexed += other.indexed
        self.skipped += other.skipped
        self.failed.update(other.failed)
        self.studies += [uid for uid in other.studies if uid not in self.studies]

    def as_dict(self) -> dict[str, Any]:
        return {
            "indexed": len(self.indexed),
            "indexed_ids": self.indexed,
            "skipped_ids": self.skipped,
            "failed": [{"id": rid, "error": err} for rid, err in sorted(self.failed.items())],
            "studies": self.studies,
        }


def _field_len(model: type, name: str) -> int:
    return int(model._meta.get_field(name).max_length)


@dataclass(slots=True)
class PendingReceipt:
    """The pacs_receipt columns indexing reads, for one receipt this batch holds locked.

    A plain row, not a Receipt: an ORM object per receipt (and a Patient, Study and Series object per receipt, all
    but the last of each thrown away) was most of the Python CPU of a webhook call."""

    pk: int
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    path: str
    calling_ae: str
    attrs: Any


# The receipts to index, locked; in arrival order, so later receipts win (see _index_usable). Found by primary key
# only, and those already indexed dropped in Python: with `indexed_at IS NULL` in the WHERE clause the planner ANDs
# in the partial index receipt_pending, whose entries for indexed receipts (dead row versions) stay until VACUUM
# removes them; that bitmap scan read every one of them, ~3 ms per call with 80,000 (autovacuum lets 20 % of the
# table pile up). Locking an already indexed receipt (a retried batch) is harmless.
_RECEIPTS_LOCK = """
    SELECT id, sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid, transfer_syntax_uid, path,
           calling_ae, CASE WHEN indexed_at IS NULL THEN attrs END
    FROM pacs_receipt
    WHERE id = ANY(%s::bigint[])
    ORDER BY received_at, id
    FOR UPDATE SKIP LOCKED"""


def _receipts_lock(wanted: list[int]) -> list[PendingReceipt]:
    """The receipts of `wanted` that are not indexed yet, locked, in arrival order; skips those another indexer
    holds."""
    with connection.cursor() as cursor:
        cursor.execute(_RECEIPTS_LOCK, [_int_array(wanted)])
        rows = cursor.fetchall()
    # attrs arrives as text (Django loads jsonb as text and leaves the parsing to JSONField): parse it here.
    return [PendingReceipt(*row[:8], attrs=json.loads(row[8])) for row in rows if row[8] is not None]


def _int_array(values: Sequence[int | None]) -> str:
    """A PostgreSQL array literal of integers. psycopg's client-side binding dumps a Python list element by element
    in Python; joined by str in C it costs a few microseconds per batch instead of a millisecond."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _memo(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`func` remembered per argument, for the values a batch repeats in every receipt (the series' UIDs, Rows...)."""
    cache: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        try:
            return cache[value]
        except KeyError:
            result = cache[value] = func(value)
            return result
        except TypeError:  # unhashable (a list)
            return func(value)

    return cached


def receipt_problem(*, receipt: Receipt | PendingReceipt) -> str | None:
    """Why this receipt cannot be indexed, or None. Checks what would otherwise corrupt the index or crash."""
    return _receipt_problem(receipt, uid_problem, os.fspath(settings.STORAGE_ROOT))


def _receipt_problem(
    receipt: Receipt | PendingReceipt, uid_check: Callable[[str | None], str | None], storage_root: str
) -> str | None:
    if not isinstance(receipt.attrs, dict):
        return "attrs is not a JSON object"
    for name, value in (
        ("StudyInstanceUID", receipt.study_instance_uid),
        ("SeriesInstanceUID", receipt.series_instance_uid),
        ("SOPInstanceUID", receipt.sop_instance_uid),
        ("SOPClassUID", receipt.sop_class_uid),
        ("TransferSyntaxUID", receipt.transfer_syntax_uid),
    ):
        problem = uid_check(value)
        if problem is not None:
            return f"{name} {value!r} is {problem}"
    path = receipt.path or ""
    # What PurePosixPath's is_absolute() and parts say, without building one per receipt.
    if not path or path.startswith("/") or ".." in path.split("/"):
        return f"path {receipt.path!r} is not a relative path under STORAGE_ROOT"
    if not os.path.isfile(os.path.join(storage_root, path)):
        return f"file {receipt.path} is missing under STORAGE_ROOT"
    return None


def _patient_fields(attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "patient_id": dv.clip(attrs.get("PatientID"), _field_len(Patient, "patient_id")),
        "issuer_of_patient_id": dv.clip(attrs.get("IssuerOfPatientID"), _field_len(Patient, "issuer_of_patient_id")),
        "patient_name": dv.clip(attrs.get("PatientName"), _field_len(Patient, "patient_name")),
        "birth_date": dv.date_parse(attrs.get("PatientBirthDate")),
        "sex": dv.clip(attrs.get("PatientSex"), _field_len(Patient, "sex")),
    }


def _patient_key(ids: tuple[Any, Any]) -> tuple[str, str]:
    """(patient_id, issuer_of_patient_id) as _patient_fields clips them, from the raw (PatientID, Issuer)."""
    return dv.clip(ids[0], _field_len(Patient, "patient_id")), dv.clip(
        ids[1], _field_len(Patient, "issuer_of_patient_id")
    )


def _study_fields(attrs: dict[str, Any], receipt: Receipt | PendingReceipt) -> dict[str, Any]:
    return {
        "study_date": dv.date_parse(attrs.get("StudyDate")),
        "study_time": dv.time_parse(attrs.get("StudyTime")),
        "accession_number": dv.clip(attrs.get("AccessionNumber"), _field_len(Study, "accession_number")),
        "study_id": dv.clip(attrs.get("StudyID"), _field_len(Study, "study_id")),
        "study_description": dv.clip(attrs.get("StudyDescription"), _field_len(Study, "study_description")),
        "referring_physician_name": dv.clip(
            attrs.get("ReferringPhysicianName"), _field_len(Study, "referring_physician_name")
        ),
        "institution_name": dv.clip(attrs.get("InstitutionName"), _field_len(Study, "institution_name")),
        "calling_ae": dv.clip(receipt.calling_ae, _field_len(Study, "calling_ae")),
    }


def _series_fields(attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "modality": dv.clip(dv.text(attrs.get("Modality")).upper(), _field_len(Series, "modality")),
        "series_number": dv.int_parse(attrs.get("SeriesNumber")),
        "series_description": dv.clip(attrs.get("SeriesDescription"), _field_len(Series, "series_description")),
        "body_part_examined": dv.clip(attrs.get("BodyPartExamined"), _field_len(Series, "body_part_examined")),
        "series_date": dv.date_parse(attrs.get("SeriesDate")),
        "series_time": dv.time_parse(attrs.get("SeriesTime")),
    }


# Instances are copied from their receipts inside PostgreSQL, in SOP Instance UID order (the lock order of
# _upsert). The attrs document, most of a row, no longer goes to Python and back: array-escaping every attrs
# JSON for bulk_create's UNNEST, and an Instance object per receipt, were the largest CPU cost of a webhook call.
# Only the values parsed leniently in Python (dicom_values) come in as arrays.
# The same statement reads where the instances were before (all parts of a statement see one snapshot, taken before
# its insert) and marks the receipts indexed: one round trip and one plan instead of three.
_INSTANCES_UPSERT = """
    WITH v AS (
        SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::integer[], %s::integer[], %s::integer[], %s::integer[])
            AS v(receipt_id, series_id, instance_number, n_rows, n_columns, number_of_frames)
    ), previous AS (
        SELECT i.sop_instance_uid, i.series_id, se.study_id
        FROM v JOIN pacs_receipt r ON r.id = v.receipt_id
        JOIN pacs_instance i ON i.sop_instance_uid = r.sop_instance_uid
        JOIN pacs_series se ON se.id = i.series_id
    ), upserted AS (
        INSERT INTO pacs_instance (sop_instance_uid, series_id, sop_class_uid, instance_number, transfer_syntax_uid,
                                   path, size_bytes, digest, "rows", "columns", number_of_frames, attrs, received_at,
                                   indexed_at)
        SELECT r.sop_instance_uid, v.series_id, r.sop_class_uid, v.instance_number, r.transfer_syntax_uid, r.path,
               r.size_bytes, r.digest, v.n_rows, v.n_columns, v.number_of_frames, r.attrs, r.received_at, %s
        FROM v JOIN pacs_receipt r ON r.id = v.receipt_id
        ORDER BY r.sop_instance_uid
        ON CONFLICT (sop_instance_uid) DO UPDATE SET
            series_id = EXCLUDED.series_id, sop_class_uid = EXCLUDED.sop_class_uid,
            instance_number = EXCLUDED.instance_number, transfer_syntax_uid = EXCLUDED.transfer_syntax_uid,
            path = EXCLUDED.path, size_bytes = EXCLUDED.size_bytes, digest = EXCLUDED.digest,
            "rows" = EXCLUDED."rows", "columns" = EXCLUDED."columns", number_of_frames = EXCLUDED.number_of_frames,
            attrs = EXCLUDED.attrs, received_at = EXCLUDED.received_at, indexed_at = EXCLUDED.indexed_at
        RETURNING 1
    ), marked AS (
        UPDATE pacs_receipt SET indexed_at = %s, index_attempts = index_attempts + 1, index_error = ''
        WHERE id IN (SELECT receipt_id FROM v)
        RETURNING 1
    )
    SELECT sop_instance_uid, series_id, study_id FROM previous"""


def _instances_upsert(
    receipts: list[PendingReceipt], placed: dict[str, int], *, now: dt.datetime
) -> dict[str, tuple[int, int]]:
    """Upsert one Instance per receipt (one receipt per SOP Instance UID) into the series `placed` names and mark
    the receipts indexed. Returns SOP Instance UID -> (series id, study id) of the instances that were indexed
    before, where they were: exact, as a SOP Instance UID has one receipt, which this batch holds locked, so no
    other batch indexes these instances meanwhile."""
    columns: list[list[int | None]] = [[], [], [], [], [], []]
    receipt_ids, series_ids, numbers, n_rows, n_columns, frames = columns
    int_parse = _memo(dv.int_parse)  # Rows, Columns, NumberOfFrames: the same in most receipts of a batch
    for r in receipts:
        attrs = r.attrs
        receipt_ids.append(r.pk)
        series_ids.append(placed[r.sop_instance_uid])
        numbers.append(dv.int_parse(attrs.get("InstanceNumber")))
        n_rows.append(int_parse(attrs.get("Rows")))
        n_columns.append(int_parse(attrs.get("Columns")))
        frames.append(int_parse(attrs.get("NumberOfFrames")))
    with connection.cursor() as cursor:
        cursor.execute(_INSTANCES_UPSERT, [*map(_int_array, columns), now, now])
        return {sop: (series_id, study_id) for sop, series_id, study_id in cursor.fetchall()}


_SERIES_OF_UIDS = """
    SELECT se.series_instance_uid, st.study_instance_uid
    FROM pacs_series se JOIN pacs_study st ON st.id = se.study_id
    WHERE se.series_instance_uid = ANY(%s)"""


def _usable_receipts(receipts: list[PendingReceipt], failed: dict[int, str]) -> list[PendingReceipt]:
    """Receipts whose data can be indexed; the others get a reason in `failed`.

    A series belongs to one study: a receipt that puts a known series (or one of an earlier receipt of the same
    batch) into another study contradicts the index and is refused rather than moving a whole series. An
    instance re-sent into another series is moved (the newest receipt is the truth).
    """
    candidates = []
    uid_check = _memo(uid_problem)  # a batch is mostly one study and series: check their UIDs once
    storage_root = os.fspath(settings.STORAGE_ROOT)
    for receipt in receipts:
        problem = _receipt_problem(receipt, uid_check, storage_root)
        if problem is None:
            candidates.append(receipt)
        else:
            failed[receipt.pk] = problem
    series_study: dict[str, str] = {}
    if candidates:
        with connection.cursor() as cursor:
            cursor.execute(_SERIES_OF_UIDS, [sorted({r.series_instance_uid for r in candidates})])
            series_study = dict(cursor.fetchall())
    usable = []
    for receipt in candidates:
        known_study = series_study.setdefault(receipt.series_instance_uid, receipt.study_instance_uid)
        if known_study != receipt.study_instance_uid:
            failed[receipt.pk] = f"series {receipt.series_instance_uid} already belongs to study {known_study}"
            continue
        usable.append(receipt)
    return usable


def _upsert(model: type, rows: list[Any], *, unique: list[str], update: list[str]) -> None:
    """INSERT ... ON CONFLICT DO UPDATE in unique-key order, so concurrent batches lock rows in the same order
    (no deadlock) and the second of two batches touching one series waits for the first and counts its rows."""
    if rows:
        rows = sorted(rows, key=lambda row: tuple(getattr(row, name) for name in unique))
        model.objects.bulk_create(rows, update_conflicts=True, unique_fields=unique, update_fields=update)


def _index_usable(
    receipts: list[PendingReceipt], *, now: dt.datetime
) -> tuple[set[int], dict[str, int], dict[str, tuple[int, int]]]:
    """Upsert the rows for `receipts` (later receipts win) and mark them indexed; return the touched study ids,
    per SOP Instance UID the id of the series its instance is now in, and where the instances indexed before were
    (see _instances_upsert).

    A Patient, Study and Series row is made from the last receipt naming it, so their fields are parsed once per
    row, not once per receipt."""
    patient_key = _memo(_patient_key)
    last_of_patient: dict[tuple[str, str], PendingReceipt] = {}
    last_of_study: dict[str, tuple[PendingReceipt, tuple[str, str]]] = {}
    last_of_series: dict[str, PendingReceipt] = {}
    for r in receipts:
        key = patient_key((r.attrs.get("PatientID"), r.attrs.get("IssuerOfPatientID")))
        last_of_patient[key] = r
        last_of_study[r.study_instance_uid] = (r, key)
        last_of_series[r.series_instance_uid] = r

    patients = {key: Patient(**_patient_fields(r.attrs)) for key, r in last_of_patient.items()}
    _upsert(
        Patient,
        list(patients.values()),
        unique=["patient_id", "issuer_of_patient_id"],
        update=["patient_name", "birth_date", "sex", "updated_at"],
    )

    studies = {
        uid: Study(study_instance_uid=uid, patient_id=patients[key].pk, **_study_fields(r.attrs, r))
        for uid, (r, key) in last_of_study.items()
    }
    study_update = ["patient", *_study_fields({}, receipts[0]).keys(), "updated_at"]
    _upsert(Study, list(studies.values()), unique=["study_instance_uid"], update=study_update)

    series = {
        uid: Series(series_instance_uid=uid, study_id=studies[r.study_instance_uid].pk, **_series_fields(r.attrs))
        for uid, r in last_of_series.items()
    }
    _upsert(Series, list(series.values()), unique=["series_instance_uid"], update=[*_series_fields({}), "updated_at"])

    placed = {r.sop_instance_uid: series[r.series_instance_uid].pk for r in receipts}
    previous = _instances_upsert(receipts, placed, now=now)
    return {s.pk for s in studies.values()}, placed, previous


_SERIES_COUNTS_ADD = """
    UPDATE pacs_series SET number_of_instances = number_of_instances + d.delta, updated_at = statement_timestamp()
    FROM unnest(%s::bigint[], %s::integer[]) AS d(id, delta)
    WHERE pacs_series.id = d.id"""


def series_counts_add(*, placed: dict[str, int], previous: dict[str, int]) -> set[int]:
    """Add to number_of_instances what this batch changed: +1 per new instance, +1/-1 per instance moved between
    series, 0 for one re-sent into its series. Returns the series ids touched.

    Counting a 2,000-instance series again for each of its ~100 webhook batches was quadratic. The increment is
    exact under concurrent batches: `previous` cannot change meanwhile (see _instances_upsert), and the UPDATE
    adds to the row's latest committed value (READ COMMITTED re-reads a row it had to wait for)."""
    deltas: dict[int, int] = defaultdict(int)
    for sop, series_id in placed.items():
        before = previous.get(sop)
        if before != series_id:
            deltas[series_id] += 1
            if before is not None:
                deltas[before] -= 1
    touched = set(placed.values()) | set(previous.values())
    if any(deltas.values()):
        ids = sorted(touched)
        with connection.cursor() as cursor:
            cursor.execute(_SERIES_COUNTS_ADD, [_int_array(ids), _int_array([deltas.get(pk, 0) for pk in ids])])
    return touched


@dataclass(frozen=True, slots=True)
class StudyCounts:
    """What a study.updated event says about a study."""

    pk: int
    study_instance_uid: str
    number_of_series: int
    number_of_instances: int
    modalities_in_study: str

    @property
    def modalities(self) -> list[str]:
        return [m for m in self.modalities_in_study.split("\\") if m]


# One statement: aggregate the series and write the study. Modalities sorted by code point (COLLATE "C" compares
# UTF-8 bytes, which sort as code points do), as Python's sorted() would.
_STUDIES_DERIVED_UPDATE = """
    WITH agg AS (
        SELECT st.id, count(se.id) AS n_series, coalesce(sum(se.number_of_instances), 0) AS n_instances,
               coalesce(string_agg(DISTINCT se.modality::text COLLATE "C", %(sep)s
                                   ORDER BY se.modality::text COLLATE "C") FILTER (WHERE se.modality <> ''), '')
                   AS modalities
        FROM pacs_study st LEFT JOIN pacs_series se ON se.study_id = st.id
        WHERE st.id = ANY(%(ids)s::bigint[])
        GROUP BY st.id
    )
    UPDATE pacs_study st SET number_of_series = agg.n_series, number_of_instances = agg.n_instances,
        modalities_in_study = left(agg.modalities, %(max_modalities)s), updated_at = %(now)s
    FROM agg WHERE st.id = agg.id
    RETURNING st.id, st.study_instance_uid, st.number_of_series, st.number_of_instances, st.modalities_in_study"""


def studies_derived_update(*, study_ids: set[int], now: dt.datetime | None = None) -> list[StudyCounts]:
    """Recompute number_of_series, number_of_instances and modalities_in_study from the series rows."""
    if not study_ids:
        return []
    params = {
        "ids": _int_array(sorted(study_ids)),
        "sep": "\\",
        "max_modalities": _field_len(Study, "modalities_in_study"),
        "now": now or timezone.now(),
    }
    with connection.cursor() as cursor:
        cursor.execute(_STUDIES_DERIVED_UPDATE, params)
        return sorted((StudyCounts(*row) for row in cursor.fetchall()), key=lambda s: s.pk)


def _empty_remove(*, series_ids: set[int], study_ids: set[int]) -> list[StudyCounts]:
    """Delete series left without instances and studies left without series by moved instances.

    Returns the studies removed (with zero counts, for the events that tell browsers they are gone)."""
    if not series_ids and not study_ids:
        return []
    Series.objects.filter(pk__in=series_ids, number_of_instances=0).delete()
    empty = list(
        Study.objects.filter(pk__in=study_ids).exclude(
            pk__in=Series.objects.filter(study_id__in=study_ids).values("study_id")
        )
    )
    Study.objects.filter(pk__in=[s.pk for s in empty]).delete()
    return [StudyCounts(study.pk, study.study_instance_uid, 0, 0, "") for study in empty]


def _after_commit(studies: list[StudyCounts], series_uids: list[str], forwards: dict[int, list[str]]) -> None:
    from noctis_pro.pacs.tasks import instances_forward  # the task module imports this one

    events = [
        StudyUpdated(
            study_instance_uid=study.study_instance_uid,
            number_of_series=study.number_of_series,
            number_of_instances=study.number_of_instances,
            modalities=study.modalities,
        )
        for study in studies
    ]
    transaction.on_commit(lambda: _announce(events, series_uids))
    for node_id, sop_uids in forwards.items():
        transaction.on_commit(lambda node_id=node_id, sop_uids=sop_uids: _queue(instances_forward, node_id, sop_uids))


def _announce(events: list[StudyUpdated], series_uids: list[str]) -> None:
    """After the commit: publish the events and queue the series' thumbnail and metadata builds (once per burst, see
    series_thumbnail_queue and metadata.series_metadata_queue), with one Redis round trip for the lot instead of
    three per series (a webhook batch runs this every few hundred milliseconds during a burst)."""
    from noctis_pro.pacs.tasks import series_thumbnail  # the task module imports this one

    try:
        pipe = redis_client().pipeline(transaction=False)
        for event in events:
            pipe.publish(CHANNEL, event.to_json())
        for uid in series_uids:
            pipe.set(THUMBNAIL_PENDING_KEY.format(uid), 1, nx=True, ex=THUMBNAIL_PENDING_TTL)
            pipe.set(METADATA_PENDING_KEY.format(uid), 1, nx=True, ex=METADATA_PENDING_TTL)
        replies = pipe.execute()
    except Exception:  # Redis is down; the index is committed: browsers learn at the next change, builds can be redone
        logger.exception("could not announce %d studies and queue the builds of series %s", len(events), series_uids)
        return
    marked = iter(replies[len(events) :])
    for uid in series_uids:
        if next(marked):
            series_thumbnail_send(series_thumbnail, uid)
        if next(marked):
            series_metadata_send(series_metadata, uid)  # the WADO-RS metadata cache


def _queue(task: Any, *args: Any) -> None:
    try:
        task.apply_async(args=args, retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2})
    except Exception:  # the broker is down: the index is committed; log what was not queued
        logger.exception("could not queue %s%r", task.name, args)


def series_thumbnail_queue(task: Any, series_uid: str) -> None:
    """Queue one thumbnail render per series per burst: a series arriving in many batches is rendered once
    THUMBNAIL_DELAY_SECONDS after its first batch (the task clears the marker, so later batches queue again; a
    series that already has a thumbnail is rendered again only once it is quiet, see tasks.series_thumbnail)."""
    try:
        if not redis_client().set(THUMBNAIL_PENDING_KEY.format(series_uid), 1, nx=True, ex=THUMBNAIL_PENDING_TTL):
            return
    except Exception:  # Redis is down: the index is committed; the thumbnail can be redone later
        logger.exception("could not queue the thumbnail of series %s", series_uid)
        return
    series_thumbnail_send(task, series_uid)


def series_thumbnail_send(task: Any, series_uid: str) -> None:
    """Send the render to the broker, once the caller has set its pending marker (see series_thumbnail_queue)."""
    try:
        task.apply_async(
            args=[series_uid],
            countdown=THUMBNAIL_DELAY_SECONDS,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2},
        )
    except Exception:  # the broker is down: the index is committed; the thumbnail can be redone later
        logger.exception("could not queue the thumbnail of series %s", series_uid)


# What one receipt's data can raise while being indexed. Anything else (the database is down) propagates, and the
# caller (the SCP through the webhook's non-2xx, or the reconciler) tries again later.
POISON_ERRORS = (DataError, IntegrityError, ValueError, TypeError, KeyError)


def receipts_index(*, receipt_ids: Sequence[int]) -> IndexResult:
    """Index the given receipts in one transaction. Safe to call again with the same ids (at-least-once).

    If the batch fails because of one receipt's data, it is split in halves until that receipt is isolated and
    recorded as failed, so one bad receipt never blocks the others (nor every later retry of the batch).
    """
    wanted = sorted({int(i) for i in receipt_ids})
    if not wanted:
        return IndexResult()
    try:
        return _batch_index(wanted)
    except POISON_ERRORS as exc:
        if len(wanted) == 1:
            return _receipt_fail(receipt_id=wanted[0], exc=exc)
        logger.warning("a batch of %d receipts failed (%r): splitting it", len(wanted), exc)
        middle = len(wanted) // 2
        result = receipts_index(receipt_ids=wanted[:middle])
        result.merge(receipts_index(receipt_ids=wanted[middle:]))
        return result


def _receipt_fail(*, receipt_id: int, exc: BaseException) -> IndexResult:
    logger.error("receipt %s cannot be indexed", receipt_id, exc_info=exc)
    error = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction.atomic():
        updated = Receipt.objects.filter(pk=receipt_id, indexed_at__isnull=True).update(
            index_attempts=F("index_attempts") + 1, index_error=error
        )
    return IndexResult(failed={receipt_id: error}) if updated else IndexResult(skipped=[receipt_id])


def _commit_without_flush_wait() -> None:
    """This transaction's COMMIT does not wait for its WAL flush (the WAL writer flushes it within a fraction of a
    second). The index is derived data: if PostgreSQL crashes before the flush, the batch is lost together with its
    receipts' indexed_at, so the receipts are unindexed again and the SCP (at start) or the reconciler indexes them.
    What must be durable, the receipt, the SCP commits itself. During a burst this takes one fsync per webhook
    call off the disk the SCP fsyncs every instance to."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _batch_index(wanted: list[int]) -> IndexResult:
    result = IndexResult()
    with transaction.atomic():
        _commit_without_flush_wait()
        receipts = _receipts_lock(wanted)
        taken = {r.pk for r in receipts}
        result.skipped = [i for i in wanted if i not in taken]
        usable = _usable_receipts(receipts, result.failed)
        studies: list[StudyCounts] = []
        series_uids: list[str] = []
        forwards: dict[int, list[str]] = {}
        removed: list[StudyCounts] = []
        if usable:
            now = timezone.now()
            study_ids, placed, previous = _index_usable(usable, now=now)  # also marks the receipts indexed
            old_series_ids = {series_id for series_id, _ in previous.values()}
            old_study_ids = {study_id for _, study_id in previous.values()}
            series_ids = set(placed.values())
            series_counts_add(placed=placed, previous={sop: place[0] for sop, place in previous.items()})
            removed = _empty_remove(series_ids=old_series_ids - series_ids, study_ids=old_study_ids - study_ids)
            kept_ids = (study_ids | old_study_ids) - {s.pk for s in removed}
            studies = studies_derived_update(study_ids=kept_ids, now=now)
            studies_indexed.send(sender=Study, study_ids=study_ids, series_ids=series_ids)
            series_uids = sorted({r.series_instance_uid for r in usable})
            # forward_plan reads .sop_instance_uid, .calling_ae and .attrs, which PendingReceipt has.
            forwards = forward_plan(receipts=cast(list[Receipt], usable))
        for rid, error in result.failed.items():
            Receipt.objects.filter(pk=rid).update(index_attempts=F("index_attempts") + 1, index_error=error)
        result.indexed = [r.pk for r in usable]
        result.studies = [s.study_instance_uid for s in studies]
        _after_commit([*studies, *removed], series_uids, forwards)
    if result.failed:
        logger.warning("receipts not indexed: %s", result.failed)
    return result
