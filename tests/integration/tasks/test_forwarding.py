"""Forwarding to a DICOM node: a real pynetdicom Storage SCP on 127.0.0.1:0 receives what the rules select."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pydicom
import pytest
from django.conf import settings
from pydicom.uid import generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt

from noctis_pro.pacs.forwarding import NodeUnreachableError
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import ForwardRule, Node, Receipt, Transfer
from noctis_pro.pacs.tasks import instances_forward
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


class Peer:
    """What the remote node received: SOP Instance UID -> (transfer syntax, raw dataset bytes)."""

    def __init__(self) -> None:
        self.received: dict[str, tuple[str, bytes]] = {}
        self.calling: list[str] = []
        self.lock = threading.Lock()

    def on_store(self, event: Any) -> int:
        ds = event.dataset
        with self.lock:
            self.received[ds.SOPInstanceUID] = (
                str(event.context.transfer_syntax),
                bytes(event.request.DataSet.getvalue()),
            )
            self.calling.append(event.assoc.requestor.ae_title)
        return 0x0000


@pytest.fixture
def peer() -> Iterator[tuple[Peer, int]]:
    state = Peer()
    ae = AE(ae_title="PEER")
    for context in StoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, state.on_store)])
    try:
        yield state, server.server_address[1]
    finally:
        server.shutdown()


def queued_forwards(django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch, ids: list[int]) -> list:
    """Index `ids`; return the forward tasks indexing handed to the broker (the broker is the boundary here)."""
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(instances_forward, "apply_async", lambda args, **kw: sent.append(tuple(args)))
    with django_capture_on_commit_callbacks(execute=True):
        receipts_index(receipt_ids=ids)
    return sent


def test_matching_instances_are_forwarded_as_stored(
    archive: Callable[..., Receipt], peer: tuple[Peer, int], django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    state, port = peer
    node = Node.objects.create(name="reading-room", ae_title="PEER", host="127.0.0.1", port=port)
    ForwardRule.objects.create(name="CT to reading room", node=node, modality="CT")
    study_uid = generate_uid()
    ct = [archive(modality="CT", study_uid=study_uid, instance_number=n) for n in (1, 2)]
    mr = archive(modality="MR", study_uid=study_uid)

    forwards = queued_forwards(django_capture_on_commit_callbacks, monkeypatch, [*(r.pk for r in ct), mr.pk])
    assert forwards == [(node.pk, [r.sop_instance_uid for r in ct])]  # the MR matches no rule

    outcome = instances_forward(*forwards[0])

    assert {key: outcome[key] for key in ("status", "completed", "failed")} == {
        "status": "done",
        "completed": 2,
        "failed": 0,
    }
    assert set(state.received) == {r.sop_instance_uid for r in ct}
    assert set(state.calling) == {settings.DICOM_AE_TITLE}
    for receipt in ct:
        transfer_syntax, raw = state.received[receipt.sop_instance_uid]
        assert transfer_syntax == receipt.transfer_syntax_uid
        assert pydicom.dcmread(settings.STORAGE_ROOT / receipt.path).PixelData in raw  # pixels as stored
    node.refresh_from_db()
    assert node.last_success_at is not None
    assert node.last_error == ""


def test_nothing_goes_back_to_the_sender_or_to_disabled_nodes(
    archive: Callable[..., Receipt], django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = Node.objects.create(name="modality", ae_title="MODALITY1", host="127.0.0.1", port=1)
    off = Node.objects.create(name="off", ae_title="OFF", host="127.0.0.1", port=1, enabled=False)
    ForwardRule.objects.create(name="all back", node=sender)
    ForwardRule.objects.create(name="all off", node=off)
    assert queued_forwards(django_capture_on_commit_callbacks, monkeypatch, [archive().pk]) == []


def test_an_unreachable_node_is_retried_and_its_error_recorded(archive: Callable[..., Receipt]) -> None:
    receipt = archive()
    receipts_index(receipt_ids=[receipt.pk])
    node = Node.objects.create(name="gone", ae_title="GONE", host="127.0.0.1", port=free_port())
    with pytest.raises(NodeUnreachableError):  # called directly, Celery re-raises instead of scheduling the retry
        instances_forward(node.pk, [receipt.sop_instance_uid])
    node.refresh_from_db()
    assert "no association with GONE@127.0.0.1" in node.last_error
    assert node.last_success_at is None


def test_instances_missing_from_the_index_are_reported(peer: tuple[Peer, int]) -> None:
    state, port = peer
    node = Node.objects.create(name="peer", ae_title="PEER", host="127.0.0.1", port=port)
    uid = generate_uid()
    outcome = instances_forward(node.pk, [uid])
    assert {key: outcome[key] for key in ("status", "completed", "failed")} == {
        "status": "failed",
        "completed": 0,
        "failed": 1,
    }
    assert f"{uid}: not in the index" in Transfer.objects.get(pk=outcome["transfer"]).error
    assert state.received == {}
