"""Transfers run by the Celery tasks (executed eagerly with `apply`, as a worker would): a send to a dcmtk storescp
arrives byte-identical, a routing rule's forward on arrival is recorded as a Transfer, an unreachable node is
retried with back-off and then marked failed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from pydicom.uid import generate_uid

from noctis_pro.contracts.events import CHANNEL
from noctis_pro.contracts.nodes import retry_delay
from noctis_pro.core.events import redis_client
from noctis_pro.pacs import nodes
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import ForwardRule, Node, Receipt, Transfer
from noctis_pro.pacs.tasks import instances_forward, transfer_run
from tests.conftest import free_port
from tests.integration.nodes.conftest import StoreScp, dataset_bytes

pytestmark = pytest.mark.django_db


def _transfer_events(pubsub: Any, transfer_id: int) -> list[tuple[str, int, int | None]]:
    """(status, completed, total) of the transfer.updated events published for a transfer, up to its end."""
    seen: list[tuple[str, int, int | None]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (seen and seen[-1][0] in ("done", "failed")):
        message = pubsub.get_message(timeout=0.2)
        event = json.loads(message["data"]) if message else {}
        if event.get("type") == "transfer.updated" and event["transfer_id"] == transfer_id:
            seen.append((event["status"], event["completed"], event["total"]))
    return seen


def _node_for(peer: StoreScp, **kwargs: Any) -> Node:
    return Node.objects.create(name="peer", ae_title=peer.ae_title, host="127.0.0.1", port=peer.port, **kwargs)


def test_send_task_delivers_the_study_byte_identical(
    archive: Callable[..., Receipt], storescp: StoreScp, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    study_uid = generate_uid()
    receipts = [archive(study_uid=study_uid, instance_number=n) for n in (1, 2, 3)]
    receipts_index(receipt_ids=[r.pk for r in receipts])
    node = _node_for(storescp)
    queued: list[list[int]] = []
    monkeypatch.setattr(transfer_run, "apply_async", lambda args, **kw: queued.append(args))
    user = User.objects.create_user(username="admin.a")
    with django_capture_on_commit_callbacks(execute=True):
        transfer = nodes.transfer_send_queue(node=node, study_uid=study_uid, user=user)
    assert queued == [[transfer.pk]]
    assert transfer.status == Transfer.Status.PENDING
    events = redis_client().pubsub(ignore_subscribe_messages=True)
    events.subscribe(CHANNEL)

    transfer_run.apply(args=queued[0])

    transfer.refresh_from_db()
    assert (transfer.status, transfer.total, transfer.completed, transfer.failed) == ("done", 3, 3, 0)
    assert transfer.attempts == 1
    assert transfer.started_at
    assert transfer.finished_at
    received = {dataset_bytes(p) for p in storescp.received()}
    assert received == {dataset_bytes(settings.STORAGE_ROOT / r.path) for r in receipts}
    node.refresh_from_db()
    assert node.last_success_at is not None
    assert node.last_error == ""
    mine = _transfer_events(events, transfer.pk)
    assert mine[0] == ("running", 0, None)  # then the count, then the result, as the Transfers page shows them
    assert mine[-1] == ("done", 3, 3)
    events.close()


def test_a_routing_rule_forward_on_arrival_is_recorded_as_a_transfer(
    archive: Callable[..., Receipt], storescp: StoreScp, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    node = _node_for(storescp)
    nodes.rule_create(name="CT from MODALITY1", node=node, modality="ct", calling_ae="MODALITY1")
    study_uid = generate_uid()
    ct = [archive(modality="CT", study_uid=study_uid, instance_number=n) for n in (1, 2)]
    mr = archive(modality="MR", study_uid=study_uid)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(instances_forward, "apply_async", lambda args, **kw: queued.append(tuple(args)))
    with django_capture_on_commit_callbacks(execute=True):
        receipts_index(receipt_ids=[*(r.pk for r in ct), mr.pk])
    assert queued == [(node.pk, [r.sop_instance_uid for r in ct])]

    instances_forward.apply(args=queued[0], task_id="forward-task-1")

    transfer = Transfer.objects.get()
    assert transfer.kind == Transfer.Kind.FORWARD
    assert transfer.task_id == "forward-task-1"
    assert (transfer.status, transfer.total, transfer.completed, transfer.node_name) == ("done", 2, 2, "peer")
    assert transfer.study_instance_uid == study_uid
    assert transfer.requested_by is None
    assert {dataset_bytes(p) for p in storescp.received()} == {
        dataset_bytes(settings.STORAGE_ROOT / r.path) for r in ct
    }


def test_no_rule_forwards_to_a_node_that_does_not_receive(
    archive: Callable[..., Receipt], django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = Node.objects.create(name="viewer", ae_title="VIEWER", host="127.0.0.1", port=1, may_receive=False)
    ForwardRule.objects.create(name="all", node=node)
    queued: list[Any] = []
    monkeypatch.setattr(instances_forward, "apply_async", lambda args, **kw: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        receipts_index(receipt_ids=[archive().pk])
    assert queued == []
    with pytest.raises(nodes.NodeInvalidError, match="does not receive from us"):
        nodes.rule_create(name="again", node=node)


def test_an_unreachable_node_is_retried_then_the_transfer_fails(
    archive: Callable[..., Receipt], monkeypatch: pytest.MonkeyPatch
) -> None:
    receipt = archive()
    receipts_index(receipt_ids=[receipt.pk])
    node = Node.objects.create(name="gone", ae_title="GONE", host="127.0.0.1", port=free_port())
    transfer = Transfer.objects.create(
        kind=Transfer.Kind.SEND, node=node, node_name=node.name, study_instance_uid=receipt.study_instance_uid
    )
    monkeypatch.setattr(transfer_run, "max_retries", 2)

    transfer_run.apply(args=[transfer.pk])  # eagerly, each retry runs at once instead of after its countdown

    transfer.refresh_from_db()
    assert transfer.status == Transfer.Status.FAILED
    assert transfer.attempts == 3
    assert f"no association with GONE@127.0.0.1:{node.port}" in transfer.error
    assert "gave up after 3 attempts" in transfer.error
    node.refresh_from_db()
    assert "no association with GONE" in node.last_error


def test_retry_delays_back_off_to_ten_minutes() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 7, 8, 20)] == [10, 20, 40, 80, 600, 600, 600]


def test_a_send_of_an_unknown_study_or_series_is_refused() -> None:
    node = Node.objects.create(name="n", ae_title="N", host="127.0.0.1", port=104)
    with pytest.raises(nodes.NodeInvalidError, match=r"no study 1\.2\.3 in the archive"):
        nodes.transfer_send_queue(node=node, study_uid="1.2.3")
    with pytest.raises(nodes.NodeInvalidError, match="study UID not digits and dots"):
        nodes.transfer_send_queue(node=node, study_uid="../etc")
    assert not Transfer.objects.exists()
