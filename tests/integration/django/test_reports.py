"""Reports: radiologists write a draft and finalize it; a final report never changes; all audited and escaped."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from noctis_pro.core.models import AuditEvent
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt
from noctis_pro.reports.models import Report

pytestmark = pytest.mark.django_db


@pytest.fixture
def study_uid(archive: Callable[..., Receipt]) -> str:
    receipt = archive()
    receipts_index(receipt_ids=[receipt.pk])
    return receipt.study_instance_uid


def login_as(client: Client, username: str, *, group: str | None) -> User:
    user = User.objects.create_user(username, password="a-long-test-password")
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])  # made by a migration (gone after a flush)
    client.force_login(user)
    return user


def test_radiologist_saves_a_draft_then_finalizes(client: Client, study_uid: str) -> None:
    login_as(client, "dr", group="radiologist")
    url = f"/studies/{study_uid}/report/"

    assert client.post(url, {"text": "No acute <b>findings</b>.", "action": "save"}).status_code == 302
    report = Report.objects.get(study__study_instance_uid=study_uid)
    assert (report.status, report.text, report.author.username) == ("draft", "No acute <b>findings</b>.", "dr")

    client.post(url, {"text": "No acute findings.\r\nImpression: normal.", "action": "finalize"})
    report.refresh_from_db()
    assert report.status == "final"
    assert report.text == "No acute findings.\nImpression: normal."
    assert report.finalized_by.username == "dr"
    assert report.finalized_at is not None

    page = client.post(url, {"text": "changed", "action": "save"}, follow=True).content.decode()
    assert "final and cannot be changed" in page
    report.refresh_from_db()
    assert report.text == "No acute findings.\nImpression: normal."
    actions = list(
        AuditEvent.objects.filter(object_id=study_uid, action__startswith="report.").values_list("action", flat=True)
    )
    assert sorted(actions) == ["report.finalize", "report.save"]


def test_report_text_is_escaped_on_the_study_page(client: Client, study_uid: str) -> None:
    login_as(client, "dr", group="radiologist")
    client.post(f"/studies/{study_uid}/report/", {"text": "<script>alert(1)</script>", "action": "finalize"})
    html = client.get(f"/studies/{study_uid}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html


def test_empty_report_cannot_be_finalized(client: Client, study_uid: str) -> None:
    login_as(client, "dr", group="radiologist")
    client.post(f"/studies/{study_uid}/report/", {"text": "  ", "action": "finalize"})
    assert not Report.objects.filter(status="final").exists()


def test_only_radiologists_write_reports(client: Client, study_uid: str) -> None:
    login_as(client, "tech", group="technologist")
    response = client.post(f"/studies/{study_uid}/report/", {"text": "x", "action": "save"})
    assert response.status_code == 403
    assert Report.objects.count() == 0
    assert "<textarea" not in client.get(f"/studies/{study_uid}/").content.decode()


def test_report_endpoint_needs_login_post_and_a_known_study(client: Client, study_uid: str) -> None:
    assert client.post(f"/studies/{study_uid}/report/", {"text": "x"}).status_code == 302  # to the login page
    login_as(client, "dr", group="radiologist")
    assert client.get(f"/studies/{study_uid}/report/").status_code == 405
    assert client.post("/studies/1.2.3.4/report/", {"text": "x"}).status_code == 404
    assert Report.objects.count() == 0
