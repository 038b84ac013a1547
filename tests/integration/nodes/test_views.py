"""The node pages: admin role only (others 403), add/edit/delete, C-ECHO inline, rules, send, transfers, remote
query; DICOM text escaped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from pydicom.uid import generate_uid

from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import ForwardRule, Node, Receipt, Transfer
from noctis_pro.pacs.tasks import transfer_run
from tests.conftest import free_port
from tests.integration.nodes.conftest import StoreScp

pytestmark = pytest.mark.django_db

PAGES = ["nodes:list", "nodes:rules", "nodes:transfers", "nodes:query"]


def _client(role: str) -> Client:
    user = User.objects.create_user(username=f"user.{role}")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin() -> Client:
    return _client("admin")


@pytest.mark.parametrize("page", PAGES)
def test_pages_are_for_the_admin_role(page: str, admin: Client) -> None:
    assert Client().get(reverse(page)).status_code == 302  # to the login page
    assert _client("radiologist").get(reverse(page)).status_code == 403
    assert admin.get(reverse(page)).status_code == 200


def test_non_admins_cannot_change_nodes() -> None:
    node = Node.objects.create(name="n", ae_title="N", host="127.0.0.1", port=104)
    tech = _client("technologist")
    assert tech.post(reverse("nodes:delete", args=[node.pk])).status_code == 403
    assert tech.post(reverse("nodes:list"), {"name": "x", "ae_title": "X", "host": "h", "port": 1}).status_code == 403
    assert Node.objects.count() == 1


def test_admin_adds_edits_and_deletes_a_node(admin: Client) -> None:
    form = {"name": "ws", "ae_title": "WS1", "host": "10.0.0.5", "port": "104", "enabled": "on", "may_receive": "on"}
    assert admin.post(reverse("nodes:list"), form).status_code == 302
    node = Node.objects.get(name="ws")
    assert (node.may_store, node.may_query, node.may_receive) == (False, False, True)

    page = admin.get(reverse("nodes:list")).content.decode()
    assert "WS1" in page
    assert "receive" in page
    assert f"AE title <b>{settings.DICOM_AE_TITLE}</b>, DICOM port {settings.DICOM_PORT}" in page  # for a C-MOVE to us

    assert admin.post(reverse("nodes:edit", args=[node.pk]), {**form, "port": "11112"}).status_code == 302
    node.refresh_from_db()
    assert node.port == 11112

    assert admin.post(reverse("nodes:delete", args=[node.pk])).status_code == 302
    assert not Node.objects.exists()


def test_a_bad_node_is_refused_with_the_reason(admin: Client) -> None:
    response = admin.post(reverse("nodes:list"), {"name": "<b>x</b>", "ae_title": "A\\B", "host": "h", "port": "1"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "may hold only printable ASCII characters other than backslash" in page
    assert "<b>x</b>" not in page  # the echoed input is escaped
    assert not Node.objects.exists()


def test_echo_answers_inline_as_json(admin: Client, storescp: StoreScp) -> None:
    node = Node.objects.create(name="peer", ae_title=storescp.ae_title, host="127.0.0.1", port=storescp.port)
    ok = admin.post(reverse("nodes:echo", args=[node.pk]), HTTP_ACCEPT="application/json").json()
    assert ok["ok"] is True
    gone = Node.objects.create(name="gone", ae_title="GONE", host="127.0.0.1", port=free_port())
    failed = admin.post(reverse("nodes:echo", args=[gone.pk]), HTTP_ACCEPT="application/json").json()
    assert failed["ok"] is False
    assert "no answer" in failed["message"]


def test_admin_adds_a_routing_rule(admin: Client) -> None:
    node = Node.objects.create(name="archive2", ae_title="ARCH2", host="127.0.0.1", port=104)
    form = {"name": "CT from X", "modality": "ct", "calling_ae": "MODALITYX", "node": node.pk}
    assert admin.post(reverse("nodes:rules"), form).status_code == 302
    rule = ForwardRule.objects.get()
    assert (rule.modality, rule.calling_ae, rule.node_id) == ("CT", "MODALITYX", node.pk)
    assert "MODALITYX" in admin.get(reverse("nodes:rules")).content.decode()
    admin.post(reverse("nodes:rule-toggle", args=[rule.pk]))
    rule.refresh_from_db()
    assert rule.enabled is False


def test_send_page_queues_a_transfer_shown_with_its_progress(
    admin: Client, archive: Callable[..., Receipt], storescp: StoreScp, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    study_uid = generate_uid()
    receipts = [archive(study_uid=study_uid, instance_number=n, patient_name="<script>x</script>^Eve") for n in (1, 2)]
    receipts_index(receipt_ids=[r.pk for r in receipts])
    node = Node.objects.create(name="peer", ae_title=storescp.ae_title, host="127.0.0.1", port=storescp.port)

    page = admin.get(reverse("nodes:send", args=[study_uid])).content.decode()
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page

    queued: list[list[int]] = []
    monkeypatch.setattr(transfer_run, "apply_async", lambda args, **kw: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(reverse("nodes:send", args=[study_uid]), {"node": node.pk, "series_uid": ""})
    assert response.status_code == 302
    transfer = Transfer.objects.get()
    assert queued == [[transfer.pk]]
    transfer_run.apply(args=queued[0])

    page = admin.get(reverse("nodes:transfers")).content.decode()
    assert '<progress max="100" value="100">' in page
    assert f'data-transfer="{transfer.pk}" data-status="done"' in page
    assert len(storescp.received()) == 2


def test_study_page_links_to_send_for_admins_only(admin: Client, archive: Callable[..., Receipt]) -> None:
    receipt = archive()
    receipts_index(receipt_ids=[receipt.pk])
    url = reverse("worklist:study", args=[receipt.study_instance_uid])
    assert 'id="send-to-node"' in admin.get(url).content.decode()
    assert 'id="send-to-node"' not in _client("radiologist").get(url).content.decode()


def test_remote_query_of_a_silent_node_says_so(admin: Client) -> None:
    node = Node.objects.create(name="gone", ae_title="GONE", host="127.0.0.1", port=free_port())
    response = admin.get(reverse("nodes:query"), {"node": node.pk, "PatientName": "DOE*"})
    assert response.status_code == 400
    assert f"no association with GONE@127.0.0.1:{node.port}" in response.content.decode()
