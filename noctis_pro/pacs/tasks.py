"""Celery tasks of the archive: the reconciler (beat), series thumbnails, and `ping` (a worker round-trip probe)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from noctis_pro.contracts.events import TaskEcho
from noctis_pro.contracts.uids import uid_problem
from noctis_pro.core.events import publish_now, redis_client
from noctis_pro.pacs.forwarding import NodeUnreachableError, instances_send
from noctis_pro.pacs.indexing import THUMBNAIL_PENDING_KEY, receipts_index, series_thumbnail_queue
from noctis_pro.pacs.models import Instance, Node, Receipt, Series
from noctis_pro.pacs.thumbnails import ThumbnailError, file_write_atomic, thumbnail_png

logger = logging.getLogger(__name__)

RECONCILE_BATCH = 500
RECONCILE_MAX_BATCHES = 20
# A series that already has a thumbnail is rendered again only once nothing arrived for it this long.
THUMBNAIL_QUIET_SECONDS = 2


@shared_task(ignore_result=True)
def reconcile_receipts(batch_size: int = RECONCILE_BATCH, max_batches: int = RECONCILE_MAX_BATCHES) -> dict[str, int]:
    """Index receipts the webhook did not (lost request, Django down): the receipt table is the truth.

    Only receipts older than RECONCILE_AFTER_SECONDS (the webhook's turn first) with fewer than
    MAX_INDEX_ATTEMPTS attempts; at most `max_batches` batches per run so a beat tick stays short.
    """
    cutoff = timezone.now() - dt.timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
    seen: set[int] = set()
    totals = {"indexed": 0, "failed": 0}
    for _ in range(max_batches):
        ids = list(
            Receipt.objects.filter(
                indexed_at__isnull=True, received_at__lt=cutoff, index_attempts__lt=settings.MAX_INDEX_ATTEMPTS
            )
            .exclude(pk__in=seen)
            .order_by("received_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        seen.update(ids)
        result = receipts_index(receipt_ids=ids)
        totals["indexed"] += len(result.indexed)
        totals["failed"] += len(result.failed)
    if totals["indexed"] or totals["failed"]:
        logger.info("reconciled receipts: %s", totals)
    return totals


@shared_task(ignore_result=True)
def series_thumbnail(series_uid: str) -> str:
    """Render MEDIA_ROOT/thumbnails/<series_uid>.png from the series' middle instance; "" when impossible.

    The first render of a series happens during its arrival; later ones wait until it is quiet."""
    if uid_problem(series_uid) is not None:
        logger.warning("thumbnail: bad series uid %r", series_uid)
        return ""
    try:
        redis_client().delete(THUMBNAIL_PENDING_KEY.format(series_uid))  # batches from now on queue a new render
    except redis.RedisError:
        logger.warning("thumbnail: could not clear the pending marker of %s", series_uid)
    series = Series.objects.filter(series_instance_uid=series_uid).first()
    if series is None:
        logger.warning("thumbnail: unknown series %s", series_uid)
        return ""
    if series.thumbnail and series.updated_at > timezone.now() - dt.timedelta(seconds=THUMBNAIL_QUIET_SECONDS):
        # Still arriving, and the worklist already shows a thumbnail: render again once the burst is over rather
        # than every THUMBNAIL_DELAY_SECONDS during it (each render lists the series and decodes an image).
        series_thumbnail_queue(series_thumbnail, series_uid)
        return series.thumbnail
    paths = list(
        Instance.objects.filter(series=series)
        .order_by("instance_number", "sop_instance_uid")
        .values_list("path", flat=True)
    )
    if not paths:
        return ""
    source = settings.STORAGE_ROOT / paths[len(paths) // 2]
    try:
        png = thumbnail_png(source)
    except ThumbnailError as exc:
        logger.warning("thumbnail: series %s: %s", series_uid, exc)
        return ""
    relpath = f"thumbnails/{series_uid}.png"
    file_write_atomic(settings.MEDIA_ROOT / relpath, png)
    Series.objects.filter(pk=series.pk).update(thumbnail=relpath)
    return relpath


@shared_task
def ping(token: str) -> str:
    """Echo `token` back as the result and as a TaskEcho event: proves the broker-worker-Redis round trip."""
    publish_now(TaskEcho(token=token))
    return token


FORWARD_MAX_RETRIES = 8


@shared_task(bind=True, ignore_result=True, max_retries=FORWARD_MAX_RETRIES, acks_late=True)
def instances_forward(self: Any, node_id: int, sop_instance_uids: list[str]) -> dict[str, Any]:
    """Send instances to a node (queued by indexing for matching ForwardRules); retried with back-off while the
    node does not answer."""
    node = Node.objects.filter(pk=node_id, enabled=True).first()
    if node is None:
        return {"sent": 0, "failed": {}, "skipped": "node missing or disabled"}
    try:
        result = instances_send(node=node, sop_uids=sop_instance_uids)
    except NodeUnreachableError as exc:
        Node.objects.filter(pk=node_id).update(last_error=str(exc))
        logger.warning("forward to %s: %s (retry %d)", node.name, exc, self.request.retries)
        raise self.retry(exc=exc, countdown=min(600, 5 * 2**self.request.retries)) from exc
    if result.failed:
        Node.objects.filter(pk=node_id).update(
            last_error=f"{len(result.failed)} instances refused: {result.failed}"[:2000]
        )
        logger.warning("forward to %s: %d sent, failed: %s", node.name, len(result.sent), result.failed)
    else:
        Node.objects.filter(pk=node_id).update(last_success_at=timezone.now(), last_error="")
    return result.as_dict()
