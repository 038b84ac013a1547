"""The WADO-RS metadata cache: each series' DICOM JSON built once, after it is indexed, so opening a study costs one
read per series instead of one file parse per instance (the usual reason big studies open slowly in viewers).

`series_metadata_queue` is called by indexing after its commit (like the thumbnails, one pending build per series
per burst); the task `series_metadata` (registered when tasks.py imports indexing, which imports this) builds
once the series has been quiet for METADATA_QUIET_SECONDS. `series_metadata_build` reads the instance rows and the
series stamp in one statement (one snapshot), parses the files with the same code FastAPI's per-instance path
uses (contracts.dicom_json), and writes the row unless a build from a later snapshot is already there. FastAPI
serves the row only while its stamp matches the series.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
from dataclasses import dataclass
from typing import Any

import redis
from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, connection
from django.db.models import F
from django.utils import timezone

from noctis_pro.contracts.dicom_json import instance_json_bytes, series_items_json
from noctis_pro.contracts.uids import uid_problem
from noctis_pro.core.events import redis_client
from noctis_pro.pacs.models import Instance, Series, SeriesMetadata

logger = logging.getLogger(__name__)

METADATA_PENDING_KEY = "noctis:metadata-pending:{}"
METADATA_PENDING_TTL = 120  # seconds; only matters if the queued task is lost
METADATA_QUIET_SECONDS = 2
GZIP_LEVEL = 6


@dataclass(frozen=True)
class BuildResult:
    series_instance_uid: str
    instances: int
    compressed_bytes: int
    written: bool  # False: a build from a later snapshot was already stored


_UPSERT = """
    INSERT INTO pacs_seriesmetadata (series_id, data, instance_count, series_updated_at, built_at)
    VALUES (%s, %s, %s, %s, now())
    ON CONFLICT (series_id) DO UPDATE SET data = EXCLUDED.data, instance_count = EXCLUDED.instance_count,
        series_updated_at = EXCLUDED.series_updated_at, built_at = EXCLUDED.built_at
    WHERE pacs_seriesmetadata.series_updated_at <= EXCLUDED.series_updated_at"""


def series_metadata_current(*, series: Series) -> bool:
    return SeriesMetadata.objects.filter(
        series=series, series_updated_at=series.updated_at, instance_count=series.number_of_instances
    ).exists()


def series_metadata_build(*, series_uid: str) -> BuildResult | None:
    """Build and store the series' metadata; None when the series is gone or a file cannot be read (the
    per-instance path keeps serving it; the error is logged)."""
    rows = list(
        Instance.objects.filter(series__series_instance_uid=series_uid)
        .order_by(F("instance_number").asc(nulls_last=True), "id")
        .values_list(
            "sop_instance_uid",
            "path",
            "series_id",
            "series__study__study_instance_uid",
            "series__updated_at",
        )
    )
    if not rows:
        return None
    series_id, study_uid, stamp = rows[0][2], rows[0][3], rows[0][4]
    try:
        items = [
            instance_json_bytes(
                settings.STORAGE_ROOT / path, base="", study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
            )
            for sop_uid, path, *_ in rows
        ]
    except (OSError, ValueError, EOFError) as exc:  # a file missing or unreadable: the files path reports it
        logger.error("metadata cache: series %s not built: %s", series_uid, exc)
        return None
    data = gzip.compress(series_items_json(items), compresslevel=GZIP_LEVEL, mtime=0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(_UPSERT, [series_id, data, len(rows), stamp])
            written = cursor.rowcount == 1
    except IntegrityError:  # the series was deleted meanwhile
        return None
    return BuildResult(series_instance_uid=series_uid, instances=len(rows), compressed_bytes=len(data), written=written)


def series_metadata_queue(task: Any, series_uid: str) -> None:
    """Queue one build per series per burst (the task clears the marker; see indexing.series_thumbnail_queue)."""
    try:
        if not redis_client().set(METADATA_PENDING_KEY.format(series_uid), 1, nx=True, ex=METADATA_PENDING_TTL):
            return
    except Exception:  # Redis is down: the index is committed; the files path serves meanwhile
        logger.exception("could not queue the metadata build of series %s", series_uid)
        return
    series_metadata_send(task, series_uid)


def series_metadata_send(task: Any, series_uid: str) -> None:
    """Send the build to the broker, once the caller has set its pending marker (see series_metadata_queue)."""
    try:
        task.apply_async(
            args=[series_uid],
            countdown=METADATA_QUIET_SECONDS,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2},
        )
    except Exception:  # the broker is down: the index is committed; the files path serves meanwhile
        logger.exception("could not queue the metadata build of series %s", series_uid)


def series_quiet(*, series: Series, now: dt.datetime | None = None) -> bool:
    """Nothing arrived for the series during the last METADATA_QUIET_SECONDS."""
    now = now or timezone.now()
    return series.updated_at <= now - dt.timedelta(seconds=METADATA_QUIET_SECONDS)


@shared_task(ignore_result=True)
def series_metadata(series_uid: str) -> int:
    """Build the series' metadata once it is quiet (queued by indexing); returns the instances cached, 0 if none."""
    if uid_problem(series_uid) is not None:
        logger.warning("metadata cache: bad series uid %r", series_uid)
        return 0
    try:
        redis_client().delete(METADATA_PENDING_KEY.format(series_uid))  # batches from now on queue a new build
    except redis.RedisError:
        logger.warning("metadata cache: could not clear the pending marker of %s", series_uid)
    series = Series.objects.filter(series_instance_uid=series_uid).first()
    if series is None or series_metadata_current(series=series):
        return 0
    if not series_quiet(series=series):
        series_metadata_queue(series_metadata, series_uid)  # still arriving: build once, after the burst
        return 0
    result = series_metadata_build(series_uid=series_uid)
    return result.instances if result is not None else 0
