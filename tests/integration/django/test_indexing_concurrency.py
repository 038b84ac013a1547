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
