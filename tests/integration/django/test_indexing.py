"""pacs.indexing.receipts_index against real PostgreSQL, with real files under a private STORAGE_ROOT."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from pydicom.uid import generate_uid

from noctis_pro.contracts.events import CHANNEL
from noctis_pro.pacs import indexing, tasks
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Instance, Patient, Receipt, Series, Study
from noctis_pro.pacs.signals import studies_indexed
from tests.conftest import make_dataset
from tests.integration.django.receipts import receipt_attrs, receipt_insert

pytestmark = pytest.mark.django_db

SAME_STUDY = generate_uid()


def test_receipts_index_is_idempotent_on_sop_uid(archive: Callable[..., Receipt]) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    receipts = [archive(study_uid=study_uid, series_uid=series_uid, instance_number=n) for n in (1, 2, 3)]
    ids = [r.pk for r in receipts]

    first = receipts_index(receipt_ids=ids)
    second = receipts_index(receipt_ids=ids)

    assert sorted(first.indexed) == sorted(ids)
    assert second.indexed == []
    assert sorted(second.skipped) == sorted(ids)
    assert Instance.objects.filter(series__series_instance_uid=series_uid).count() == 3
    study = Study.objects.get(study_instance_uid=study_uid)
    assert (study.number_of_series, study.number_of_instances) == (1, 3)
    assert Series.objects.get(series_instance_uid=series_uid).number_of_instances == 3
    for receipt in Receipt.objects.filter(pk__in=ids):
        assert receipt.indexed_at is not None
        assert receipt.index_attempts == 1
        assert receipt.index_error == ""


def test_receipts_index_resent_instance_does_not_duplicate(archive: Callable[..., Receipt]) -> None:
    """At-least-once delivery: the SCP re-receives the same SOP Instance (new receipt row after the old one)."""
    receipt = archive(instance_number=7)
    receipts_index(receipt_ids=[receipt.pk])
    # The sender retries the same instance: the receipt is marked unindexed again (as an upsert by the SCP would).
    Receipt.objects.filter(pk=receipt.pk).update(indexed_at=None)
    result = receipts_index(receipt_ids=[receipt.pk])
    assert result.indexed == [receipt.pk]
    assert Instance.objects.filter(sop_instance_uid=receipt.sop_instance_uid).count() == 1
    assert Study.objects.get(study_instance_uid=receipt.study_instance_uid).number_of_instances == 1


def test_receipts_index_derives_study_fields_across_ct_and_mr(archive: Callable[..., Receipt]) -> None:
    study_uid = generate_uid()
    ct_series, mr_series = generate_uid(), generate_uid()
    ids = [
        archive(modality="CT", study_uid=study_uid, series_uid=ct_series, instance_number=n, SeriesNumber=2).pk
        for n in (1, 2)
    ]
    ids += [
        archive(modality="MR", study_uid=study_uid, series_uid=mr_series, instance_number=n, SeriesNumber=5).pk
        for n in (1, 2, 3)
    ]
    receipts_index(receipt_ids=ids[:2])  # CT first, MR in a later batch: derived fields follow
    receipts_index(receipt_ids=ids[2:])

    study = Study.objects.select_related("patient").get(study_instance_uid=study_uid)
    assert study.modalities_in_study == "CT\\MR"
    assert study.number_of_series == 2
    assert study.number_of_instances == 5
    assert study.study_date == dt.date(2026, 1, 15)
    assert study.study_time == dt.time(10, 15)
    assert study.accession_number == "ACC0001"
    assert study.study_description == "Chest"
    assert study.referring_physician_name == "House^Gregory"
    assert study.calling_ae == "MODALITY1"
    assert study.patient.patient_name == "Doe^Jane"
    assert study.patient.birth_date == dt.date(1970, 1, 1)
    mr = Series.objects.get(series_instance_uid=mr_series)
    assert (mr.modality, mr.series_number, mr.number_of_instances) == ("MR", 5, 3)
    instance = Instance.objects.get(sop_instance_uid=Receipt.objects.get(pk=ids[3]).sop_instance_uid)
    assert (instance.instance_number, instance.rows, instance.columns) == (2, 64, 64)
    assert instance.path.endswith(".dcm")
    assert instance.digest == Receipt.objects.get(pk=ids[3]).digest
    assert instance.digest.startswith("blake3:")
    assert len(instance.digest) == len("blake3:") + 64


def test_receipts_index_upserts_one_patient_per_id_and_issuer(archive: Callable[..., Receipt]) -> None:
    ids = [archive(patient_id="P-1", patient_name="Old^Name").pk, archive(patient_id="P-1", patient_name="New^Name").pk]
    receipts_index(receipt_ids=ids)
    patient = Patient.objects.get(patient_id="P-1", issuer_of_patient_id="")
    assert patient.patient_name == "New^Name"
    assert patient.studies.count() == 2


def test_receipts_index_tolerates_invalid_dates_and_numbers(archive: Callable[..., Receipt]) -> None:
    receipt = archive()
    receipt.attrs.update(StudyDate="20261399", StudyTime="99", SeriesNumber="x", PatientBirthDate="unknown")
    receipt.save(update_fields=["attrs"])
    result = receipts_index(receipt_ids=[receipt.pk])
    assert result.indexed == [receipt.pk]
    study = Study.objects.select_related("patient").get(study_instance_uid=receipt.study_instance_uid)
    assert study.study_date is None
    assert study.study_time is None
    assert study.patient.birth_date is None
    assert Series.objects.get(series_instance_uid=receipt.series_instance_uid).series_number is None


def test_receipts_index_unusable_receipts_do_not_block_the_batch(archive: Callable[..., Receipt]) -> None:
    good = archive()
    missing_file = archive()
    (settings.STORAGE_ROOT / missing_file.path).unlink()
    bad_uid = archive()
    Receipt.objects.filter(pk=bad_uid.pk).update(study_instance_uid="../etc")
    conflicting = archive(series_uid=good.series_instance_uid)  # same series, another study

    result = receipts_index(receipt_ids=[good.pk, missing_file.pk, bad_uid.pk, conflicting.pk])

    assert result.indexed == [good.pk]
    assert set(result.failed) == {missing_file.pk, bad_uid.pk, conflicting.pk}
    assert "missing" in result.failed[missing_file.pk]
    assert "not digits and dots" in result.failed[bad_uid.pk]
    assert "already belongs to study" in result.failed[conflicting.pk]
    for receipt in Receipt.objects.filter(pk__in=result.failed):
        assert receipt.indexed_at is None
        assert receipt.index_attempts == 1
        assert receipt.index_error == result.failed[receipt.pk]
    assert not Study.objects.filter(study_instance_uid=conflicting.study_instance_uid).exists()
    assert Instance.objects.count() == 1


def test_receipts_index_500_receipts_fast_with_bounded_queries(archive: Callable[..., Receipt]) -> None:
    study_uid = generate_uid()
    series_uids = [generate_uid() for _ in range(5)]
    ids = [
        archive(study_uid=study_uid, series_uid=series_uids[n % 5], instance_number=n, rows=8, columns=8).pk
        for n in range(500)
    ]
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        with transaction.atomic():  # the on_commit callbacks must not run inside the measured call
            result = receipts_index(receipt_ids=ids)
            elapsed = time.perf_counter() - started
            transaction.set_rollback(True)
    assert len(result.indexed) == 500
    assert len(queries) < 30, [q["sql"][:80] for q in queries]
    assert elapsed < 1.0


def _messages(pubsub: Any, seconds: float) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message and message["type"] == "message":
            out.append(json.loads(message["data"]))
    return out


@pytest.fixture
def events() -> Any:
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    _messages(pubsub, 0.2)
    yield pubsub
    pubsub.close()
    client.close()


def test_receipts_index_publishes_study_updated_after_commit(
    archive: Callable[..., Receipt], events: Any, django_capture_on_commit_callbacks: Any
) -> None:
    receipt = archive(modality="MR")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        receipts_index(receipt_ids=[receipt.pk])
    assert not [e for e in _messages(events, 0.3) if e.get("study_instance_uid") == receipt.study_instance_uid]
    for callback in callbacks:  # the commit happens now
        callback()
    mine = [e for e in _messages(events, 1.0) if e.get("study_instance_uid") == receipt.study_instance_uid]
    assert mine == [
        {
            "type": "study.updated",
            "study_instance_uid": receipt.study_instance_uid,
            "number_of_series": 1,
            "number_of_instances": 1,
            "modalities": ["MR"],
        }
    ]


def test_receipts_index_rolled_back_publishes_nothing(
    archive: Callable[..., Receipt], events: Any, django_capture_on_commit_callbacks: Any
) -> None:
    receipt = archive()

    def index_then_fail() -> None:
        with transaction.atomic():
            receipts_index(receipt_ids=[receipt.pk])
            raise RuntimeError("the caller's transaction fails after indexing")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        index_then_fail()
    assert callbacks == []
    assert not [e for e in _messages(events, 0.5) if e.get("study_instance_uid") == receipt.study_instance_uid]
    assert not Study.objects.filter(study_instance_uid=receipt.study_instance_uid).exists()
    assert Receipt.objects.get(pk=receipt.pk).indexed_at is None


def test_thumbnails_are_queued_once_per_series_burst(
    archive: Callable[..., Receipt], django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:

    queued: list[tuple[Any, ...]] = []
    # The broker is the boundary here: record what would be sent to it.
    monkeypatch.setattr(tasks.series_thumbnail, "apply_async", lambda args, **kw: queued.append(tuple(args)))
    series_uid = generate_uid()
    for n in (1, 2, 3):
        with django_capture_on_commit_callbacks(execute=True):
            receipts_index(receipt_ids=[archive(series_uid=series_uid, study_uid=SAME_STUDY, instance_number=n).pk])
    assert queued == [(series_uid,)]
    tasks.series_thumbnail(series_uid)  # the render clears the marker: the next batch queues again
    with django_capture_on_commit_callbacks(execute=True):
        receipts_index(receipt_ids=[archive(series_uid=series_uid, study_uid=SAME_STUDY, instance_number=4).pk])
    assert queued == [(series_uid,), (series_uid,)]


def test_instance_resent_into_another_study_moves_and_empty_rows_go(
    archive: Callable[..., Receipt], storage_root: Any, events: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The SCP's upsert rewrote the receipt (same SOP, corrected Study/Series UIDs): the newest receipt wins."""

    kept = archive(instance_number=1)
    moved = archive(study_uid=kept.study_instance_uid, series_uid=kept.series_instance_uid, instance_number=2)
    lonely = archive(instance_number=1)  # alone in its study
    receipts_index(receipt_ids=[kept.pk, moved.pk, lonely.pk])
    target = receipt_insert(ds=make_dataset(instance_number=9), storage_root=storage_root)
    receipts_index(receipt_ids=[target.pk])

    for receipt in (moved, lonely):  # re-sent into the target study's series
        ds = make_dataset(
            sop_uid=receipt.sop_instance_uid, study_uid=target.study_instance_uid,
            series_uid=target.series_instance_uid, instance_number=5,
        )  # fmt: skip
        relpath = f"{target.study_instance_uid}/{target.series_instance_uid}/{receipt.sop_instance_uid}.dcm"
        (storage_root / relpath).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(storage_root / relpath, enforce_file_format=True)
        Receipt.objects.filter(pk=receipt.pk).update(
            study_instance_uid=target.study_instance_uid, series_instance_uid=target.series_instance_uid,
            path=relpath, attrs=receipt_attrs(ds), indexed_at=None,
        )  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        result = receipts_index(receipt_ids=[moved.pk, lonely.pk])

    gone = [e for e in _messages(events, 1.0) if e.get("study_instance_uid") == lonely.study_instance_uid]
    assert gone == [
        {"type": "study.updated", "study_instance_uid": lonely.study_instance_uid, "number_of_series": 0,
         "number_of_instances": 0, "modalities": []}
    ]  # fmt: skip
    assert sorted(result.indexed) == sorted([moved.pk, lonely.pk])
    assert Instance.objects.filter(series__series_instance_uid=target.series_instance_uid).count() == 3
    target_study = Study.objects.get(study_instance_uid=target.study_instance_uid)
    assert (target_study.number_of_series, target_study.number_of_instances) == (1, 3)
    kept_study = Study.objects.get(study_instance_uid=kept.study_instance_uid)
    assert (kept_study.number_of_series, kept_study.number_of_instances) == (1, 1)
    assert not Study.objects.filter(study_instance_uid=lonely.study_instance_uid).exists()
    assert not Series.objects.filter(series_instance_uid=lonely.series_instance_uid).exists()
    assert set(result.studies) == {target.study_instance_uid, kept.study_instance_uid}
    assert Instance.objects.count() == 4


def test_a_receipt_that_breaks_the_batch_is_isolated_and_the_rest_indexed(
    archive: Callable[..., Receipt], monkeypatch: pytest.MonkeyPatch
) -> None:

    real_series_fields = indexing._series_fields

    def series_fields(attrs: dict[str, Any]) -> dict[str, Any]:  # an unforeseen failure on one receipt's data
        if attrs.get("SeriesDescription") == "POISON":
            raise ValueError("unforeseen value")
        return real_series_fields(attrs)

    monkeypatch.setattr(indexing, "_series_fields", series_fields)
    ids = [archive(instance_number=n).pk for n in range(7)]
    poison = archive(SeriesDescription="POISON")
    ids.insert(3, poison.pk)

    result = receipts_index(receipt_ids=ids)

    assert sorted(result.indexed) == sorted(i for i in ids if i != poison.pk)
    assert result.failed == {poison.pk: "ValueError: unforeseen value"}
    receipt = Receipt.objects.get(pk=poison.pk)
    assert (receipt.indexed_at, receipt.index_attempts, receipt.index_error) == (
        None,
        1,
        "ValueError: unforeseen value",
    )
    assert Instance.objects.count() == 7


def test_modality_is_upper_cased_within_its_length(archive: Callable[..., Receipt]) -> None:
    receipt = archive()
    receipt.attrs["Modality"] = "ß" * 16  # upper() makes "SS" of each: still within varchar(16)
    receipt.save(update_fields=["attrs"])
    assert receipts_index(receipt_ids=[receipt.pk]).indexed == [receipt.pk]
    assert Series.objects.get(series_instance_uid=receipt.series_instance_uid).modality == "S" * 16


@pytest.mark.django_db(transaction=True)
def test_receipts_index_commits_without_waiting_for_the_wal_flush(archive: Callable[..., Receipt]) -> None:
    """The index is rebuilt from the durable receipts after a crash, so its COMMIT need not wait for an fsync."""
    seen: list[str] = []

    def receiver(**kwargs: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])

    studies_indexed.connect(receiver, dispatch_uid="test.synchronous_commit")
    try:
        receipts_index(receipt_ids=[archive().pk])
    finally:
        studies_indexed.disconnect(dispatch_uid="test.synchronous_commit")
    assert seen == ["off"]
    with connection.cursor() as cursor:  # SET LOCAL: the setting ends with the batch's transaction
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_receipts_index_copies_the_receipt_into_the_instance(archive: Callable[..., Receipt]) -> None:
    receipt = archive(instance_number=12, rows=8, columns=8)
    receipts_index(receipt_ids=[receipt.pk])
    instance = Instance.objects.get(sop_instance_uid=receipt.sop_instance_uid)
    assert instance.series.series_instance_uid == receipt.series_instance_uid
    assert (instance.sop_class_uid, instance.transfer_syntax_uid) == (
        receipt.sop_class_uid,
        receipt.transfer_syntax_uid,
    )
    assert (instance.path, instance.size_bytes, instance.digest) == (receipt.path, receipt.size_bytes, receipt.digest)
    assert (instance.instance_number, instance.rows, instance.columns, instance.number_of_frames) == (12, 8, 8, None)
    assert instance.attrs == receipt.attrs
    assert instance.received_at == receipt.received_at
    assert instance.indexed_at is not None


def test_receipts_index_the_last_receipt_of_a_batch_names_the_patient_study_and_series(
    archive: Callable[..., Receipt],
) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    ids = [
        archive(
            study_uid=study_uid,
            series_uid=series_uid,
            instance_number=n,
            patient_id="P-LAST",
            patient_name=f"Name^{n}",
            StudyDescription=f"Study {n}",
            SeriesDescription=f"Series {n}",
        ).pk
        for n in (1, 2, 3)
    ]
    receipts_index(receipt_ids=list(reversed(ids)))  # the order of arrival counts, not the order of the ids

    study = Study.objects.select_related("patient").get(study_instance_uid=study_uid)
    assert (study.study_description, study.patient.patient_name) == ("Study 3", "Name^3")
    series = Series.objects.get(series_instance_uid=series_uid)
    assert (series.series_description, series.number_of_instances) == ("Series 3", 3)
    assert sorted(Instance.objects.filter(series=series).values_list("instance_number", flat=True)) == [1, 2, 3]


def test_receipts_index_one_batch_of_two_series_derives_the_study(archive: Callable[..., Receipt]) -> None:
    study_uid, mr, ct = generate_uid(), generate_uid(), generate_uid()
    ids = [archive(modality="MR", study_uid=study_uid, series_uid=mr).pk]
    ids += [archive(modality="CT", study_uid=study_uid, series_uid=ct, instance_number=n).pk for n in (1, 2)]
    ids += [archive(modality="sr", study_uid=study_uid).pk]  # upper-cased before the modalities are listed
    result = receipts_index(receipt_ids=ids)
    assert result.studies == [study_uid]
    study = Study.objects.get(study_instance_uid=study_uid)
    assert (study.number_of_series, study.number_of_instances, study.modalities_in_study) == (3, 4, "CT\\MR\\SR")
    counts = dict(Series.objects.filter(study=study).values_list("series_instance_uid", "number_of_instances"))
    assert (counts[mr], counts[ct]) == (1, 2)


def test_builds_are_queued_once_per_series_burst_for_every_series_of_a_batch(
    archive: Callable[..., Receipt],
    events: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from noctis_pro.pacs import metadata

    queued: list[tuple[str, str]] = []
    # The broker is the boundary here: record what would be sent to it.
    monkeypatch.setattr(tasks.series_thumbnail, "apply_async", lambda args, **kw: queued.append(("png", *args)))
    monkeypatch.setattr(metadata.series_metadata, "apply_async", lambda args, **kw: queued.append(("json", *args)))
    study_uid, first, second = generate_uid(), generate_uid(), generate_uid()
    for n in (1, 2):  # two batches of the same two series
        with django_capture_on_commit_callbacks(execute=True):
            receipts_index(
                receipt_ids=[
                    archive(study_uid=study_uid, series_uid=first, instance_number=n).pk,
                    archive(study_uid=study_uid, series_uid=second, instance_number=n).pk,
                ]
            )
    assert sorted(queued) == sorted([("png", first), ("json", first), ("png", second), ("json", second)])
    mine = [e for e in _messages(events, 1.0) if e.get("study_instance_uid") == study_uid]
    assert [e["number_of_instances"] for e in mine] == [2, 4]  # every batch is announced, in order


def test_receipts_index_a_retried_batch_indexes_only_what_is_not_indexed_yet(archive: Callable[..., Receipt]) -> None:
    series_uid = generate_uid()
    old = [archive(study_uid=SAME_STUDY, series_uid=series_uid, instance_number=n).pk for n in (1, 2)]
    receipts_index(receipt_ids=old)
    new = archive(study_uid=SAME_STUDY, series_uid=series_uid, instance_number=3).pk

    result = receipts_index(receipt_ids=[*old, new, 10**12])  # and an id that does not exist

    assert (result.indexed, sorted(result.skipped)) == ([new], sorted([*old, 10**12]))
    assert Series.objects.get(series_instance_uid=series_uid).number_of_instances == 3
    attempts = dict(Receipt.objects.filter(pk__in=[*old, new]).values_list("pk", "index_attempts"))
    assert attempts == {old[0]: 1, old[1]: 1, new: 1}


def test_receipts_index_new_rows_get_the_model_defaults_and_a_later_batch_updates_them(
    archive: Callable[..., Receipt],
) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    receipts_index(receipt_ids=[archive(study_uid=study_uid, series_uid=series_uid, StudyDescription="First").pk])
    study = Study.objects.select_related("patient").get(study_instance_uid=study_uid)
    assert (study.status, study.priority, study.facility_id, study.assigned_to_id) == ("unread", "routine", None, None)
    assert study.received_at is not None
    assert study.patient.created_at is not None
    series = Series.objects.get(series_instance_uid=series_uid)
    assert (series.thumbnail, series.number_of_instances) == ("", 1)

    later = archive(study_uid=study_uid, series_uid=series_uid, instance_number=2, StudyDescription="Second")
    receipts_index(receipt_ids=[later.pk])
    again = Study.objects.get(pk=study.pk)
    assert (again.study_description, again.received_at, again.number_of_instances) == ("Second", study.received_at, 2)
    assert again.updated_at > study.updated_at
