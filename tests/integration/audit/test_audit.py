"""The audit trail: opening a study, reports, exports and searches are recorded (who, what, when, from where), and
only admins search the log (filters by user, action, study, address and dates; paged)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from noctis_pro.core.audit import AuditFilters, audit_search
from noctis_pro.core.models import AuditEvent
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt

pytestmark = pytest.mark.django_db


def login(name: str, group: str | None = None, *, superuser: bool = False) -> Client:
    maker = User.objects.create_superuser if superuser else User.objects.create_user
    user = maker(name, password="a-long-test-password")
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    client = Client(REMOTE_ADDR="10.0.0.7")
    client.force_login(user)
    return client


@pytest.fixture
def study_uid(archive: Callable[..., Receipt]) -> str:
    receipt = archive()
    receipts_index(receipt_ids=[receipt.pk])
    return receipt.study_instance_uid


def test_study_view_report_and_export_are_recorded_with_who_and_where(study_uid: str) -> None:
    dr = login("dr", "radiologist")
    dr.get(f"/studies/{study_uid}/", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.10")
    dr.post(f"/studies/{study_uid}/report/", {"action": "sign", "findings": "Fine.", "impression": "Normal."})
    dr.get(f"/studies/{study_uid}/report/")
    dr.get(f"/studies/{study_uid}/report.pdf")
    events = {e.action: e for e in AuditEvent.objects.filter(object_id=study_uid)}
    assert {"study.view", "report.sign", "report.view", "report.export"} <= set(events)
    view = events["study.view"]
    assert (view.username, view.remote_addr) == ("dr", "192.0.2.10")  # the address nginx saw, not the forged one
    assert events["report.export"].remote_addr == "10.0.0.7"
    assert timezone.now() - view.at < dt.timedelta(minutes=1)


def test_only_admins_search_the_log(study_uid: str) -> None:
    for role in ("radiologist", "technologist", "referrer"):
        assert login(f"u_{role}", role).get("/audit/").status_code == 403
    assert Client().get("/audit/").status_code == 302
    assert login("boss", "admin").get("/audit/").status_code == 200


def test_search_filters_and_pages(study_uid: str) -> None:
    dr = login("dr", "radiologist")
    other = login("nurse", "technologist")
    dr.get(f"/studies/{study_uid}/")
    other.get(f"/studies/{study_uid}/")
    dr.post(f"/studies/{study_uid}/report/", {"action": "save", "findings": "x"})
    old = AuditEvent.objects.create(username="ghost", action="study.view", object_id=study_uid, remote_addr="1.1.1.1")
    AuditEvent.objects.filter(pk=old.pk).update(at=timezone.now() - dt.timedelta(days=40))

    admin = login("root", superuser=True)
    page = admin.get("/audit/", {"user": "DR", "study": study_uid}).content.decode()
    assert "<td>study.view</td>" in page
    assert "<td>report.save</td>" in page
    assert "nurse" not in page
    page = admin.get("/audit/", {"action": "report."}).content.decode()
    assert "<td>report.save</td>" in page
    assert "<td>study.view</td>" not in page
    today = timezone.localdate()
    recent = admin.get("/audit/", {"study": study_uid, "date_from": f"{today - dt.timedelta(days=1):%Y-%m-%d}"})
    assert "ghost" not in recent.content.decode()
    long_ago = today - dt.timedelta(days=40)
    ranged = admin.get("/audit/", {"date_from": f"{long_ago:%Y-%m-%d}", "date_to": f"{long_ago:%Y-%m-%d}"})
    assert "ghost" in ranged.content.decode()
    assert "1.1.1.1" in admin.get("/audit/", {"remote_addr": "1.1.1.1"}).content.decode()
    assert AuditEvent.objects.filter(action="audit.search", username="root").count() == 5

    AuditEvent.objects.bulk_create(AuditEvent(username="bulk", action="study.list") for _ in range(150))
    first = admin.get("/audit/", {"user": "bulk"}).content.decode()
    second = admin.get("/audit/", {"user": "bulk", "page": 2}).content.decode()
    assert first.count("data-audit-id=") == 100
    assert second.count("data-audit-id=") == 50
    assert 'id="audit-count">150<' in first


def test_audit_search_function_orders_newest_first() -> None:
    a = AuditEvent.objects.create(username="a", action="x.one")
    b = AuditEvent.objects.create(username="a", action="x.two")
    assert list(audit_search(filters=AuditFilters(username="a"))) == [b, a]
    assert list(audit_search(filters=AuditFilters(action="x.one"))) == [a]
