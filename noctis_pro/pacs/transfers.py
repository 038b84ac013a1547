"""Running a Transfer (pacs.models.Transfer): a send or forward (C-STORE SCU, pacs.forwarding) or a retrieve
(C-MOVE SCU, contracts.scu.move, our AE title as the destination). Progress is written to the row as it goes so
the Transfers page and GET /api/v1/transfers show it. Retries are the Celery task's (pacs.tasks.transfer_run):
an unreachable node raises NodeUnreachableError, anything else ends the transfer with its error recorded.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from noctis_pro.contracts import scu
from noctis_pro.contracts.events import TransferUpdated
from noctis_pro.core.events import publish_now
from noctis_pro.pacs.forwarding import SendResult, instances_send
from noctis_pro.pacs.models import Node, Transfer
from noctis_pro.pacs.nodes import peer_of, transfer_sop_uids

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 2000


def _update(transfer: Transfer, **values: Any) -> None:
    """Write progress to the row and announce it on /ws (the Transfers page updates live)."""
    values["updated_at"] = timezone.now()
    Transfer.objects.filter(pk=transfer.pk).update(**values)
    for key, value in values.items():
        if not hasattr(value, "resolve_expression"):
            setattr(transfer, key, value)
    publish_now(
        TransferUpdated(
            transfer_id=transfer.pk, kind=transfer.kind, status=transfer.status, node_name=transfer.node_name,
            study_instance_uid=transfer.study_instance_uid, total=transfer.total, completed=transfer.completed,
            failed=transfer.failed, error=transfer.error[:300],
        )
    )  # fmt: skip


def transfer_for_forward(*, node_id: int, sop_uids: list[str], task_id: str | None) -> Transfer | None:
    """The Transfer of a routing-rule forward; one per Celery task, so its retries update the same row."""
    node = Node.objects.filter(pk=node_id).first()
    if node is None:
        return None
    if task_id:
        found = Transfer.objects.filter(task_id=task_id).first()
        if found is not None:
            return found
    return Transfer.objects.create(
        kind=Transfer.Kind.FORWARD,
        node=node,
        node_name=node.name,
        study_instance_uid=_study_of(sop_uids),
        sop_instance_uids=list(sop_uids),
        task_id=task_id or "",
        total=len(sop_uids),
    )


def _study_of(sop_uids: list[str]) -> str:
    from noctis_pro.pacs.models import Instance

    studies = set(
        Instance.objects.filter(sop_instance_uid__in=sop_uids[:50]).values_list(
            "series__study__study_instance_uid", flat=True
        )
    )
    return studies.pop() if len(studies) == 1 else ""


def transfer_begin(*, transfer: Transfer, task_id: str | None = None) -> None:
    now = timezone.now()
    _update(
        transfer,
        status=Transfer.Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=transfer.started_at or now,
        task_id=task_id or transfer.task_id,
        error="",
    )
    transfer.refresh_from_db(fields=["attempts"])


def transfer_retry_later(*, transfer: Transfer, error: str, delay: int) -> None:
    _update(transfer, status=Transfer.Status.PENDING, error=f"{error}; retry in {delay} s"[:MAX_ERROR_LENGTH])


def transfer_fail(*, transfer: Transfer, error: str) -> None:
    _update(transfer, status=Transfer.Status.FAILED, error=error[:MAX_ERROR_LENGTH], finished_at=timezone.now())
    if transfer.node_id:
        Node.objects.filter(pk=transfer.node_id).update(last_error=error[:MAX_ERROR_LENGTH])


def _finish(transfer: Transfer, *, completed: int, failed: int, error: str) -> None:
    status = Transfer.Status.FAILED if failed or error else Transfer.Status.DONE
    _update(
        transfer,
        status=status,
        completed=completed,
        failed=failed,
        error=error[:MAX_ERROR_LENGTH],
        finished_at=timezone.now(),
    )
    if transfer.node_id:
        if status == Transfer.Status.DONE:
            Node.objects.filter(pk=transfer.node_id).update(last_success_at=timezone.now(), last_error="")
        else:
            Node.objects.filter(pk=transfer.node_id).update(last_error=error[:MAX_ERROR_LENGTH])


def transfer_execute(*, transfer: Transfer) -> None:
    """Move the images; NodeUnreachableError (no association) leaves the retry to the caller."""
    node = transfer.node
    if node is None or not node.enabled:
        transfer_fail(transfer=transfer, error="the node was removed or disabled")
        return
    if transfer.kind == Transfer.Kind.RETRIEVE:
        _retrieve(transfer, node)
    else:
        _send(transfer, node)


def _send(transfer: Transfer, node: Node) -> None:
    if not node.may_receive:
        transfer_fail(transfer=transfer, error=f"node {node.name!r} does not receive from us")
        return
    sop_uids = transfer_sop_uids(transfer=transfer)
    if not sop_uids:
        transfer_fail(transfer=transfer, error="nothing to send: no instances in the archive")
        return
    _update(transfer, total=len(sop_uids), completed=0, failed=0)

    def progress(result: SendResult) -> None:
        _update(transfer, completed=len(result.sent), failed=len(result.failed))

    result = instances_send(node=node, sop_uids=sop_uids, progress=progress)
    error = ""
    if result.failed:
        shown = "; ".join(f"{uid}: {why}" for uid, why in list(result.failed.items())[:5])
        error = f"{len(result.failed)} of {len(sop_uids)} instances not stored ({shown})"
        logger.warning("transfer %s to %s: %s", transfer.pk, node.name, error)
    _finish(transfer, completed=len(result.sent), failed=len(result.failed), error=error)


def _retrieve(transfer: Transfer, node: Node) -> None:
    def progress(state: scu.MoveProgress) -> None:
        total = (state.remaining or 0) + state.completed + state.failed + state.warning
        _update(transfer, total=total or None, completed=state.completed + state.warning, failed=state.failed)

    try:
        state = scu.move(
            calling_ae=settings.DICOM_AE_TITLE,
            peer=peer_of(node),
            destination_ae=settings.DICOM_AE_TITLE,
            study_uid=transfer.study_instance_uid,
            series_uid=transfer.series_instance_uid,
            progress=progress,
        )
    except scu.QueryInvalidError as exc:
        transfer_fail(transfer=transfer, error=str(exc))
        return
    completed = state.completed + state.warning
    if state.status == 0x0000 and not completed and not state.failed:
        error = "the node has no such study" if not transfer.series_instance_uid else "the node has no such series"
    else:
        error = state.error or (f"{state.failed} sub-operations failed" if state.failed else "")
    _update(transfer, total=completed + state.failed or transfer.total)
    _finish(transfer, completed=completed, failed=state.failed, error=error)
