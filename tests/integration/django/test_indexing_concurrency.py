"""receipts_index from several processes at once (gunicorn workers, the reconciler): counts stay right.

Committed transactions on real PostgreSQL, one connection per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest
from django.db import connection
from pydicom.uid import generate_uid

from noctis_pro.pacs.indexing import IndexResult, receipts_index
from noctis_pro.pacs.models import Instance, Receipt, Series, Study

pytestmark = pytest.mark.django_db(transaction=True)


def index_in_parallel(batches: Sequence[Sequence[int]]) -> list[IndexResult]:
    results: list[IndexResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(batches))

    def run(ids: Sequence[int]) -> None:
        try:
            barrier.wait()
            results.append(receipts_index(receipt_ids=ids))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


def test_parallel_batches_of_one_series_count_every_instance(archive: Callable[..., Receipt], settings: object) -> None:
    settings.AI_AUTO_ANALYZERS = []  # type: ignore[attr-defined]
    study_uid, series_uid = generate_uid(), generate_uid()
    ids = [
        archive(study_uid=study_uid, series_uid=series_uid, instance_number=n, rows=8, columns=8).pk for n in range(60)
    ]
    index_in_parallel([ids[0::3], ids[1::3], ids[2::3]])
    assert Series.objects.get(series_instance_uid=series_uid).number_of_instances == 60
    study = Study.objects.get(study_instance_uid=study_uid)
    assert (study.number_of_series, study.number_of_instances) == (1, 60)


def test_the_same_batch_twice_at_once_indexes_each_receipt_once(
    archive: Callable[..., Receipt], settings: object
) -> None:
    settings.AI_AUTO_ANALYZERS = []  # type: ignore[attr-defined]
    study_uid = generate_uid()
    ids = [archive(study_uid=study_uid, instance_number=n, rows=8, columns=8).pk for n in range(40)]
    results = index_in_parallel([ids, ids])
    indexed = [rid for result in results for rid in result.indexed]
    assert sorted(indexed) == sorted(ids)  # each receipt by exactly one of the two
    assert Instance.objects.count() == 40
    assert Study.objects.get(study_instance_uid=study_uid).number_of_instances == 40
    assert set(Receipt.objects.values_list("index_attempts", flat=True)) == {1}


def _counts_match_the_rows(study_uid: str) -> None:
    study = Study.objects.get(study_instance_uid=study_uid)
    for series in Series.objects.filter(study=study):
        assert series.number_of_instances == Instance.objects.filter(series=series).count()
    assert study.number_of_instances == Instance.objects.filter(series__study=study).count()
    assert study.number_of_series == Series.objects.filter(study=study).count()


def test_many_small_batches_at_once_keep_the_counts_exact(archive: Callable[..., Receipt], settings: object) -> None:
    """Counts are incremented per batch: 30 batches of 3, four at a time, over two series of one study."""
    settings.AI_AUTO_ANALYZERS = []  # type: ignore[attr-defined]
    study_uid, ct, mr = generate_uid(), generate_uid(), generate_uid()
    ids = [
        archive(study_uid=study_uid, series_uid=ct if n % 2 else mr, instance_number=n, rows=8, columns=8).pk
        for n in range(90)
    ]
    batches = [ids[i : i + 3] for i in range(0, 90, 3)]
    for start in range(0, len(batches), 4):
        index_in_parallel(batches[start : start + 4])
    assert Series.objects.get(series_instance_uid=ct).number_of_instances == 45
    assert Study.objects.get(study_instance_uid=study_uid).number_of_instances == 90
    _counts_match_the_rows(study_uid)


def test_counts_stay_exact_when_instances_are_resent_and_moved(
    archive: Callable[..., Receipt], settings: object
) -> None:
    settings.AI_AUTO_ANALYZERS = []  # type: ignore[attr-defined]
    study_uid, first, second = generate_uid(), generate_uid(), generate_uid()
    receipts = [archive(study_uid=study_uid, series_uid=first, instance_number=n, rows=8, columns=8) for n in range(6)]
    receipts_index(receipt_ids=[r.pk for r in receipts])
    # Re-sent: two into the same series (no change), two corrected into another series of the study.
    Receipt.objects.filter(pk__in=[r.pk for r in receipts[:4]]).update(indexed_at=None)
    Receipt.objects.filter(pk__in=[r.pk for r in receipts[2:4]]).update(series_instance_uid=second)
    index_in_parallel([[receipts[0].pk, receipts[2].pk], [receipts[1].pk, receipts[3].pk]])
    assert Series.objects.get(series_instance_uid=first).number_of_instances == 4
    assert Series.objects.get(series_instance_uid=second).number_of_instances == 2
    _counts_match_the_rows(study_uid)
