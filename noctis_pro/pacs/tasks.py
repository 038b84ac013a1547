"""Celery tasks of the archive: the reconciler (beat), series thumbnails, `ping` (a worker round-trip probe), and
transfers to and from DICOM nodes (rule forwards, sends, retrieves) with retries and back-off."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from noctis_pro.contracts.events import TaskEcho
from noctis_pro.contracts.nodes import TASK_TRANSFER_RUN, retry_delay
from noctis_pro.contracts.scu import NodeUnreachableError
from noctis_pro.contracts.uids import uid_problem
from noctis_pro.core.events import publish_now, redis_client
from noctis_pro.pacs.indexing import THUMBNAIL_PENDING_KEY, receipts_index, series_thumbnail_queue
from noctis_pro.pacs.models import Instance, Node, Receipt, Series, Transfer
from noctis_pro.pacs.thumbnails import ThumbnailError, file_write_atomic, thumbnail_png
from noctis_pro.pacs.transfers import (
    transfer_begin,
    transfer_execute,
    transfer_fail,
    transfer_for_forward,
    transfer_retry_later,
)

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


def _transfer_attempt(task: Any, transfer: Transfer) -> dict[str, Any]:
    """One attempt of a transfer; while the node does not answer, retried after contracts.nodes.retry_delay."""
    transfer_begin(transfer=transfer, task_id=task.request.id)
    try:
        transfer_execute(transfer=transfer)
    except NodeUnreachableError as exc:
        if task.request.retries >= task.max_retries:
            transfer_fail(transfer=transfer, error=f"{exc} (gave up after {transfer.attempts} attempts)")
            logger.warning("transfer %s to %s: %s, giving up", transfer.pk, transfer.node_name, exc)
            return {"transfer": transfer.pk, "status": Transfer.Status.FAILED}
        delay = retry_delay(task.request.retries + 1)
        transfer_retry_later(transfer=transfer, error=str(exc), delay=delay)
        if transfer.node_id:
            Node.objects.filter(pk=transfer.node_id).update(last_error=str(exc))
        logger.warning("transfer %s to %s: %s (retry %d in %d s)", transfer.pk, transfer.node_name, exc,
                       task.request.retries + 1, delay)  # fmt: skip
        raise task.retry(exc=exc, countdown=delay) from exc
    return {
        "transfer": transfer.pk,
        "status": transfer.status,
        "completed": transfer.completed,
        "failed": transfer.failed,
    }


@shared_task(bind=True, ignore_result=True, max_retries=FORWARD_MAX_RETRIES, acks_late=True)
def instances_forward(self: Any, node_id: int, sop_instance_uids: list[str]) -> dict[str, Any]:
    """Send instances to a node (queued by indexing for matching ForwardRules), recorded as a forward Transfer;
    retried with back-off while the node does not answer."""
    transfer = transfer_for_forward(node_id=node_id, sop_uids=sop_instance_uids, task_id=self.request.id)
    if transfer is None:
        return {"sent": 0, "failed": {}, "skipped": "node missing"}
    return _transfer_attempt(self, transfer)


@shared_task(bind=True, name=TASK_TRANSFER_RUN, ignore_result=True, max_retries=FORWARD_MAX_RETRIES, acks_late=True)
def transfer_run(self: Any, transfer_id: int) -> dict[str, Any]:
    """Run a queued send or retrieve (Django's nodes.transfer_*_queue or FastAPI's /api/v1 insert the row)."""
    transfer = Transfer.objects.select_related("node").filter(pk=transfer_id).first()
    if transfer is None:
        logger.warning("transfer %s: no such transfer", transfer_id)
        return {"transfer": transfer_id, "status": "missing"}
    if transfer.status in (Transfer.Status.DONE, Transfer.Status.FAILED):
        return {"transfer": transfer.pk, "status": transfer.status}  # a redelivered message: already settled
    return _transfer_attempt(self, transfer)
