"""The single indexing path: receipts (the outbox the SCP and STOW-RS write) become Patient/Study/Series/Instance.

The webhook, the reconciler task and (through the webhook) STOW-RS all end in `receipts_index`. One transaction
per batch; a fixed number of queries per batch (no query per instance); idempotent on SOP Instance UID.
Events and Celery work go out only after the commit.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from noctis_pro.contracts.events import StudyUpdated
from noctis_pro.contracts.uids import uid_problem
from noctis_pro.core.events import publish_on_commit, redis_client
from noctis_pro.pacs import dicom_values as dv
from noctis_pro.pacs.forwarding import forward_plan
from noctis_pro.pacs.metadata import series_metadata, series_metadata_queue
from noctis_pro.pacs.models import Instance, Patient, Receipt, Series, Study
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


def receipt_problem(*, receipt: Receipt) -> str | None:
    """Why this receipt cannot be indexed, or None. Checks what would otherwise corrupt the index or crash."""
    if not isinstance(receipt.attrs, dict):
        return "attrs is not a JSON object"
    for name, value in (
        ("StudyInstanceUID", receipt.study_instance_uid),
        ("SeriesInstanceUID", receipt.series_instance_uid),
        ("SOPInstanceUID", receipt.sop_instance_uid),
        ("SOPClassUID", receipt.sop_class_uid),
        ("TransferSyntaxUID", receipt.transfer_syntax_uid),
    ):
        problem = uid_problem(value)
        if problem is not None:
            return f"{name} {value!r} is {problem}"
    path = PurePosixPath(receipt.path or "")
    if not receipt.path or path.is_absolute() or ".." in path.parts:
        return f"path {receipt.path!r} is not a relative path under STORAGE_ROOT"
    if not (settings.STORAGE_ROOT / receipt.path).is_file():
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


def _study_fields(attrs: dict[str, Any], receipt: Receipt) -> dict[str, Any]:
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
_INSTANCES_UPSERT = """
    INSERT INTO pacs_instance (sop_instance_uid, series_id, sop_class_uid, instance_number, transfer_syntax_uid,
                               path, size_bytes, sha256, "rows", "columns", number_of_frames, attrs, received_at,
                               indexed_at)
    SELECT r.sop_instance_uid, v.series_id, r.sop_class_uid, v.instance_number, r.transfer_syntax_uid, r.path,
           r.size_bytes, r.sha256, v.n_rows, v.n_columns, v.number_of_frames, r.attrs, r.received_at, %s
    FROM unnest(%s::bigint[], %s::bigint[], %s::integer[], %s::integer[], %s::integer[], %s::integer[])
         AS v(receipt_id, series_id, instance_number, n_rows, n_columns, number_of_frames)
    JOIN pacs_receipt r ON r.id = v.receipt_id
    ORDER BY r.sop_instance_uid
    ON CONFLICT (sop_instance_uid) DO UPDATE SET
        series_id = EXCLUDED.series_id, sop_class_uid = EXCLUDED.sop_class_uid,
        instance_number = EXCLUDED.instance_number, transfer_syntax_uid = EXCLUDED.transfer_syntax_uid,
        path = EXCLUDED.path, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256, "rows" = EXCLUDED."rows",
        "columns" = EXCLUDED."columns", number_of_frames = EXCLUDED.number_of_frames, attrs = EXCLUDED.attrs,
        received_at = EXCLUDED.received_at, indexed_at = EXCLUDED.indexed_at"""


def _instances_upsert(receipts: list[Receipt], placed: dict[str, int]) -> None:
    """Upsert one Instance per receipt (one receipt per SOP Instance UID) into the series `placed` names."""
    columns: list[list[int | None]] = [[], [], [], [], [], []]
    for r in receipts:
        attrs = r.attrs
        row = (r.pk, placed[r.sop_instance_uid], dv.int_parse(attrs.get("InstanceNumber")))
        row += (dv.int_parse(attrs.get("Rows")), dv.int_parse(attrs.get("Columns")))
        row += (dv.int_parse(attrs.get("NumberOfFrames")),)
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(_INSTANCES_UPSERT, [timezone.now(), *columns])


def _usable_receipts(receipts: list[Receipt], failed: dict[int, str]) -> list[Receipt]:
    """Receipts whose data can be indexed; the others get a reason in `failed`.

    A series belongs to one study: a receipt that puts a known series (or one of an earlier receipt of the same
    batch) into another study contradicts the index and is refused rather than moving a whole series. An
    instance re-sent into another series is moved (the newest receipt is the truth).
    """
    candidates = []
    for receipt in receipts:
        problem = receipt_problem(receipt=receipt)
        if problem is None:
            candidates.append(receipt)
        else:
            failed[receipt.pk] = problem
    series_study = dict(
        Series.objects.filter(series_instance_uid__in={r.series_instance_uid for r in candidates}).values_list(
            "series_instance_uid", "study__study_instance_uid"
        )
    )
    usable = []
    for receipt in candidates:
        known_study = series_study.setdefault(receipt.series_instance_uid, receipt.study_instance_uid)
        if known_study != receipt.study_instance_uid:
            failed[receipt.pk] = f"series {receipt.series_instance_uid} already belongs to study {known_study}"
            continue
        usable.append(receipt)
    return usable


def _previous_places(receipts: list[Receipt]) -> dict[str, tuple[int, int]]:
    """SOP Instance UID -> (series id, study id) the receipts' instances are indexed under now (changed if one
    moves). Exact for the whole transaction: a SOP Instance UID has one receipt, which this batch holds locked, so
    no other batch indexes these instances meanwhile."""
    rows = Instance.objects.filter(sop_instance_uid__in=[r.sop_instance_uid for r in receipts]).values_list(
        "sop_instance_uid", "series_id", "series__study_id"
    )
    return {sop: (series_id, study_id) for sop, series_id, study_id in rows}


def _upsert(model: type, rows: list[Any], *, unique: list[str], update: list[str]) -> None:
    """INSERT ... ON CONFLICT DO UPDATE in unique-key order, so concurrent batches lock rows in the same order
    (no deadlock) and the second of two batches touching one series waits for the first and counts its rows."""
    if rows:
        rows = sorted(rows, key=lambda row: tuple(getattr(row, name) for name in unique))
        model.objects.bulk_create(rows, update_conflicts=True, unique_fields=unique, update_fields=update)


def _index_usable(receipts: list[Receipt]) -> tuple[set[int], dict[str, int]]:
    """Upsert the rows for `receipts` (later receipts win); return the touched study ids and, per SOP Instance
    UID, the id of the series its instance is now in."""
    patients: dict[tuple[str, str], Patient] = {}
    for r in receipts:
        fields = _patient_fields(r.attrs)
        patients[(fields["patient_id"], fields["issuer_of_patient_id"])] = Patient(**fields)
    _upsert(
        Patient,
        list(patients.values()),
        unique=["patient_id", "issuer_of_patient_id"],
        update=["patient_name", "birth_date", "sex", "updated_at"],
    )

    studies: dict[str, Study] = {}
    for r in receipts:
        pf = _patient_fields(r.attrs)
        patient = patients[(pf["patient_id"], pf["issuer_of_patient_id"])]
        studies[r.study_instance_uid] = Study(
            study_instance_uid=r.study_instance_uid, patient_id=patient.pk, **_study_fields(r.attrs, r)
        )
    study_update = ["patient", *_study_fields({}, receipts[0]).keys(), "updated_at"]
    _upsert(Study, list(studies.values()), unique=["study_instance_uid"], update=study_update)

    series: dict[str, Series] = {}
    for r in receipts:
        series[r.series_instance_uid] = Series(
            series_instance_uid=r.series_instance_uid,
            study_id=studies[r.study_instance_uid].pk,
            **_series_fields(r.attrs),
        )
    _upsert(Series, list(series.values()), unique=["series_instance_uid"], update=[*_series_fields({}), "updated_at"])

    placed = {r.sop_instance_uid: series[r.series_instance_uid].pk for r in receipts}
    _instances_upsert(receipts, placed)
    return {s.pk for s in studies.values()}, placed


def series_counts_add(*, placed: dict[str, int], previous: dict[str, int]) -> set[int]:
    """Add to number_of_instances what this batch changed: +1 per new instance, +1/-1 per instance moved between
    series, 0 for one re-sent into its series. Returns the series ids touched.

    Counting a 2,000-instance series again for each of its ~100 webhook batches was quadratic. The increment is
    exact under concurrent batches: `previous` cannot change meanwhile (see _previous_places), and the UPDATE
    adds to the row's latest committed value (READ COMMITTED re-reads a row it had to wait for)."""
    deltas: dict[int, int] = defaultdict(int)
    for sop, series_id in placed.items():
        before = previous.get(sop)
        if before != series_id:
            deltas[series_id] += 1
            if before is not None:
                deltas[before] -= 1
    touched = set(placed.values()) | set(previous.values())
    changed = {series_id: delta for series_id, delta in deltas.items() if delta}
    if changed:
        delta = Case(*(When(pk=pk, then=Value(d)) for pk, d in sorted(changed.items())), default=Value(0))
        Series.objects.filter(pk__in=touched).update(
            number_of_instances=F("number_of_instances") + delta, updated_at=Now()
        )
    return touched


def studies_derived_update(*, study_ids: set[int]) -> list[Study]:
    """Recompute number_of_series, number_of_instances and modalities_in_study from the series rows."""
    per_study: dict[int, dict[str, Any]] = {
        sid: {"series": 0, "instances": 0, "modalities": set()} for sid in study_ids
    }
    for study_id, modality, n in Series.objects.filter(study_id__in=study_ids).values_list(
        "study_id", "modality", "number_of_instances"
    ):
        agg = per_study[study_id]
        agg["series"] += 1
        agg["instances"] += n
        if modality:
            agg["modalities"].add(modality)
    studies = list(Study.objects.filter(pk__in=study_ids).order_by("pk"))
    max_modalities = _field_len(Study, "modalities_in_study")
    derived = ["number_of_series", "number_of_instances", "modalities_in_study", "updated_at"]
    for study in studies:
        agg = per_study[study.pk]
        study.number_of_series = agg["series"]
        study.number_of_instances = agg["instances"]
        study.modalities_in_study = "\\".join(sorted(agg["modalities"]))[:max_modalities]
        study.updated_at = timezone.now()
    if len(studies) == 1:  # a webhook batch is almost always one study: bulk_update's CASE costs ~3 ms of CPU
        Study.objects.filter(pk=studies[0].pk).update(**{name: getattr(studies[0], name) for name in derived})
    else:
        Study.objects.bulk_update(studies, derived)
    return studies


def _empty_remove(*, series_ids: set[int], study_ids: set[int]) -> list[Study]:
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
    for study in empty:
        study.number_of_series = study.number_of_instances = 0
        study.modalities_in_study = ""
    return empty


def _after_commit(studies: list[Study], series_uids: list[str], forwards: dict[int, list[str]]) -> None:
    from noctis_pro.pacs.tasks import instances_forward, series_thumbnail  # the task module imports this one

    for study in studies:
        publish_on_commit(
            StudyUpdated(
                study_instance_uid=study.study_instance_uid,
                number_of_series=study.number_of_series,
                number_of_instances=study.number_of_instances,
                modalities=study.modalities,
            )
        )
    for uid in series_uids:
        transaction.on_commit(lambda uid=uid: series_thumbnail_queue(series_thumbnail, uid))
        transaction.on_commit(lambda uid=uid: series_metadata_queue(series_metadata, uid))  # WADO-RS metadata cache
    for node_id, sop_uids in forwards.items():
        transaction.on_commit(lambda node_id=node_id, sop_uids=sop_uids: _queue(instances_forward, node_id, sop_uids))


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
        task.apply_async(
            args=[series_uid],
            countdown=THUMBNAIL_DELAY_SECONDS,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2},
        )
    except Exception:  # Redis or the broker is down: the index is committed; the thumbnail can be redone later
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
        receipts = list(
            Receipt.objects.select_for_update(skip_locked=True)
            .filter(pk__in=wanted, indexed_at__isnull=True)
            .order_by("received_at", "pk")
        )
        taken = {r.pk for r in receipts}
        result.skipped = [i for i in wanted if i not in taken]
        usable = _usable_receipts(receipts, result.failed)
        studies: list[Study] = []
        series_uids: list[str] = []
        forwards: dict[int, list[str]] = {}
        removed: list[Study] = []
        if usable:
            previous = _previous_places(usable)
            old_series_ids = {series_id for series_id, _ in previous.values()}
            old_study_ids = {study_id for _, study_id in previous.values()}
            study_ids, placed = _index_usable(usable)
            series_ids = set(placed.values())
            series_counts_add(placed=placed, previous={sop: place[0] for sop, place in previous.items()})
            removed = _empty_remove(series_ids=old_series_ids - series_ids, study_ids=old_study_ids - study_ids)
            kept_ids = (study_ids | old_study_ids) - {s.pk for s in removed}
            studies = studies_derived_update(study_ids=kept_ids)
            studies_indexed.send(sender=Study, study_ids=study_ids, series_ids=series_ids)
            series_uids = sorted({r.series_instance_uid for r in usable})
            forwards = forward_plan(receipts=usable)
        now = timezone.now()
        ok_ids = [r.pk for r in usable]
        Receipt.objects.filter(pk__in=ok_ids).update(
            indexed_at=now, index_attempts=F("index_attempts") + 1, index_error=""
        )
        for rid, error in result.failed.items():
            Receipt.objects.filter(pk=rid).update(index_attempts=F("index_attempts") + 1, index_error=error)
        result.indexed = ok_ids
        result.studies = [s.study_instance_uid for s in studies]
        _after_commit([*studies, *removed], series_uids, forwards)
    if result.failed:
        logger.warning("receipts not indexed: %s", result.failed)
    return result
