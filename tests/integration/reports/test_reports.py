"""Reports: autosaved drafts, signing (radiologists only), immutability, addenda, the study status that follows,
the PDF (text inside, escaped), report.signed on Redis, and the audit of each step."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client
from pypdf import PdfReader

from noctis_pro.contracts import events
from noctis_pro.core.models import AuditEvent
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt, Study
from noctis_pro.reports.models import Addendum, Report, ReportTemplate

pytestmark = pytest.mark.django_db

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def study_uid(archive: Callable[..., Receipt]) -> str:
    receipt = archive(modality="CT", patient_name=XSS)
    receipts_index(receipt_ids=[receipt.pk])
    return receipt.study_instance_uid


def login_as(username: str, group: str | None) -> Client:
    user = User.objects.create_user(username, password="a-long-test-password")
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    client = Client()
    client.force_login(user)
    return client


def autosave(client: Client, uid: str, **fields: str) -> Any:
    return client.post(
        f"/studies/{uid}/report/draft",
        data=json.dumps(fields),
        content_type="application/json",
        HTTP_ACCEPT="application/json",
    )


def status_of(uid: str) -> str:
    return Study.objects.get(study_instance_uid=uid).status


def test_autosave_sign_then_immutable_and_addendum(study_uid: str, django_capture_on_commit_callbacks: Any) -> None:
    dr = login_as("dr", "radiologist")
    assert status_of(study_uid) == "unread"
    response = autosave(dr, study_uid, findings="Lungs clear.", impression="")
    assert response.status_code == 200
    assert response.json()["status"] == "draft"
    assert status_of(study_uid) == "in_progress"
    autosave(dr, study_uid, findings="Lungs clear.\r\nNo effusion.", impression="Normal.")
    report = Report.objects.get(study__study_instance_uid=study_uid)
    assert (report.findings, report.impression, report.status) == ("Lungs clear.\nNo effusion.", "Normal.", "draft")

    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(events.CHANNEL)
    with django_capture_on_commit_callbacks(execute=True):
        signed = dr.post(
            f"/studies/{study_uid}/report/",
            {"action": "sign", "findings": "Lungs clear.", "impression": "Normal chest."},
        )
    assert signed.status_code == 302
    report.refresh_from_db()
    assert (report.status, report.impression, report.finalized_by.username) == ("final", "Normal chest.", "dr")
    assert status_of(study_uid) == "final"
    published = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not any(e.get("type") == "report.signed" for e in published):
        message = subscriber.get_message(timeout=0.2)  # None also for the skipped subscribe confirmation
        if message is not None:
            published.append(json.loads(message["data"]))
    subscriber.close()
    assert {"type": "report.signed", "study_instance_uid": study_uid, "report_id": report.pk,
            "signed_by": "dr", "status": "final"} in published  # fmt: skip

    # Signed: autosave and the form both refuse; nothing changes.
    assert autosave(dr, study_uid, findings="changed", impression="").status_code == 409
    dr.post(f"/studies/{study_uid}/report/", {"action": "save", "findings": "changed"})
    report.refresh_from_db()
    assert report.findings == "Lungs clear."

    assert dr.post(f"/studies/{study_uid}/report/addendum", {"text": "Compare with prior."}).status_code == 302
    assert list(Addendum.objects.values_list("text", flat=True)) == ["Compare with prior."]
    page = dr.get(f"/studies/{study_uid}/report/").content.decode()
    assert "Compare with prior." in page
    assert "Normal chest." in page

    actions = sorted(AuditEvent.objects.filter(object_id=study_uid).values_list("action", flat=True))
    assert actions.count("report.save") == 2
    assert {"report.sign", "report.addendum", "report.view"} <= set(actions)


def test_preliminary_marks_the_study_reported(study_uid: str) -> None:
    dr = login_as("dr", "radiologist")
    dr.post(f"/studies/{study_uid}/report/", {"action": "preliminary", "findings": "Prelim.", "impression": "x"})
    assert status_of(study_uid) == "reported"
    assert Report.objects.get().status == "draft"  # still editable until signed


def test_who_may_write_sign_and_read(study_uid: str) -> None:
    tech = login_as("tech", "technologist")
    assert autosave(tech, study_uid, findings="x").status_code == 403
    assert tech.post(f"/studies/{study_uid}/report/", {"action": "sign", "findings": "x"}).status_code == 403
    ref = login_as("ref", "referrer")
    assert ref.post(f"/studies/{study_uid}/report/", {"action": "sign", "findings": "x"}).status_code == 403
    assert ref.get(f"/studies/{study_uid}/report/").status_code == 404  # nothing signed yet
    assert Report.objects.count() == 0

    dr = login_as("dr", "radiologist")
    autosave(dr, study_uid, findings="Draft text only radiologists read.")
    assert ref.get(f"/studies/{study_uid}/report/").status_code == 404  # a draft is not for referrers
    assert ref.get(f"/studies/{study_uid}/report.pdf").status_code == 404
    assert "Draft text only" in tech.get(f"/studies/{study_uid}/report/").content.decode()
    dr.post(f"/studies/{study_uid}/report/", {"action": "sign", "findings": "Signed text.", "impression": "Fine."})
    view = ref.get(f"/studies/{study_uid}/report/")
    assert view.status_code == 200
    assert "Signed text." in view.content.decode()
    assert "<textarea" not in view.content.decode()
    assert ref.post(f"/studies/{study_uid}/report/addendum", {"text": "x"}).status_code == 403


def test_empty_report_cannot_be_signed(study_uid: str) -> None:
    dr = login_as("dr", "radiologist")
    dr.post(f"/studies/{study_uid}/report/", {"action": "sign", "findings": " ", "impression": ""})
    assert not Report.objects.filter(status="final").exists()
    assert status_of(study_uid) == "unread"


def test_autosave_rejects_what_is_not_text(study_uid: str) -> None:
    dr = login_as("dr", "radiologist")
    bad = dr.post(f"/studies/{study_uid}/report/draft", data="{nope", content_type="application/json")
    assert bad.status_code == 400
    assert "JSON" in bad.json()["error"]
    assert autosave(dr, study_uid, findings=["list"]).status_code == 400  # type: ignore[arg-type]
    assert Report.objects.count() == 0


def test_pdf_contains_the_text_and_the_name_as_text(study_uid: str) -> None:
    dr = login_as("dr", "radiologist")
    dr.post(
        f"/studies/{study_uid}/report/",
        {"action": "sign", "findings": "Nodule <5 mm & stable.", "impression": "Benign."},
    )
    dr.post(f"/studies/{study_uid}/report/addendum", {"text": "Addendum text."})
    response = dr.get(f"/studies/{study_uid}/report.pdf?download=1")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    for expected in ("Nodule <5 mm & stable.", "Benign.", "Addendum text.", XSS, "Signed by dr"):
        assert expected in text, expected
    assert AuditEvent.objects.filter(action="report.export", object_id=study_uid).count() == 1


def test_report_and_name_are_escaped_on_the_pages(study_uid: str) -> None:
    dr = login_as("dr", "radiologist")
    dr.post(f"/studies/{study_uid}/report/", {"action": "sign", "findings": "<script>alert(1)</script>"})
    for url in (f"/studies/{study_uid}/", f"/studies/{study_uid}/report/"):
        html = dr.get(url).content.decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert(1)</script>" not in html
        assert XSS not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_templates_for_the_modality_are_offered(study_uid: str) -> None:
    ReportTemplate.objects.get_or_create(name="CT chest", defaults={"modality": "CT", "findings": "Lungs: "})
    ReportTemplate.objects.get_or_create(name="MR brain", defaults={"modality": "MR", "findings": "Brain: "})
    page = login_as("dr", "radiologist").get(f"/studies/{study_uid}/report/").content.decode()
    assert "CT chest" in page
    assert "MR brain" not in page


def test_seeded_templates_exist() -> None:
    assert {"CT", "MR", "CR", "US"} <= set(ReportTemplate.objects.values_list("modality", flat=True))
