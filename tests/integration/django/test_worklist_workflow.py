"""The worklist's reading workflow: search by name or ID, filters (body part, date presets, status, priority,
assignee), sorting by any column, status counts, and the row actions (assign to me, priority), with their audit."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from noctis_pro.core.models import AuditEvent
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt, Study
from noctis_pro.worklist.forms import date_preset_range

pytestmark = pytest.mark.django_db


def user_with(role: str, client: Client | None = None) -> tuple[User, Client]:
    user = User.objects.create_user(role + "_user", password="a-long-test-password")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = client or Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def studies(archive: Callable[..., Receipt]) -> dict[str, str]:
    today = timezone.localdate()
    made = {}
    for key, name, pid, modality, body, date in (
        ("old_ct", "ALPHA^ANNA", "P-100", "CT", "HEAD", today - dt.timedelta(days=30)),
        ("today_mr", "BRAVO^BEN", "P-200", "MR", "KNEE", today),
        ("yday_ct", "CHARLIE^CARL", "P-300", "CT", "CHEST", today - dt.timedelta(days=1)),
    ):
        receipt = archive(
            patient_name=name, patient_id=pid, modality=modality, BodyPartExamined=body, StudyDate=f"{date:%Y%m%d}"
        )
        receipts_index(receipt_ids=[receipt.pk])
        made[key] = receipt.study_instance_uid
    return made


def shown(client: Client, studies: dict[str, str], query: str) -> set[str]:
    response = client.get("/?" + query)
    assert response.status_code == 200
    html = response.content.decode()
    return {key for key, uid in studies.items() if f'data-study-uid="{uid}"' in html}


def test_search_and_filters(studies: dict[str, str]) -> None:
    _, client = user_with("radiologist")
    assert shown(client, studies, "") == set(studies)
    assert shown(client, studies, "q=bravo") == {"today_mr"}
    assert shown(client, studies, "q=P-300") == {"yday_ct"}
    assert shown(client, studies, "modality=ct") == {"old_ct", "yday_ct"}
    assert shown(client, studies, "body_part=knee") == {"today_mr"}
    assert shown(client, studies, "date=today") == {"today_mr"}
    assert shown(client, studies, "date=yesterday") == {"yday_ct"}
    assert shown(client, studies, "date=7d") == {"today_mr", "yday_ct"}
    old = timezone.localdate() - dt.timedelta(days=30)
    assert shown(client, studies, f"date_from={old:%Y-%m-%d}&date_to={old:%Y-%m-%d}") == {"old_ct"}


def test_date_presets() -> None:
    today = dt.date(2026, 3, 1)
    assert date_preset_range("yesterday", today=today) == (dt.date(2026, 2, 28), dt.date(2026, 2, 28))
    assert date_preset_range("7d", today=today) == (dt.date(2026, 2, 23), today)
    assert date_preset_range("", today=today) == (None, None)


def test_sort_by_any_column(studies: dict[str, str]) -> None:
    _, client = user_with("radiologist")

    def order(ordering: str) -> list[str]:
        html = client.get(f"/?ordering={ordering}").content.decode()
        uids = re.findall(r'<tr data-study-uid="([^"]+)"', html)
        by_uid = {uid: key for key, uid in studies.items()}
        return [by_uid[u] for u in uids]

    assert order("patient_name") == ["old_ct", "today_mr", "yday_ct"]
    assert order("-patient_name") == ["yday_ct", "today_mr", "old_ct"]
    assert order("patient_id") == ["old_ct", "today_mr", "yday_ct"]
    assert order("study_date") == ["old_ct", "yday_ct", "today_mr"]
    assert order("modality")[-1] == "today_mr"
    for column in ("description", "accession", "series", "images", "received_at", "status", "priority", "assigned"):
        for sign in ("", "-"):
            assert sorted(order(sign + column)) == sorted(studies), column
    Study.objects.filter(study_instance_uid=studies["yday_ct"]).update(priority="stat")
    Study.objects.filter(study_instance_uid=studies["old_ct"]).update(priority="urgent")
    assert order("priority") == ["yday_ct", "old_ct", "today_mr"]


def test_actions_assign_priority_and_counts(studies: dict[str, str]) -> None:
    rad, client = user_with("radiologist")
    uid = studies["today_mr"]
    assert client.post(f"/worklist/studies/{uid}/assign", {"to": "me", "next": "/"}).status_code == 302
    assert Study.objects.get(study_instance_uid=uid).assigned_to == rad
    assert shown(client, studies, "assigned=me") == {"today_mr"}
    assert shown(client, studies, "assigned=none") == {"old_ct", "yday_ct"}
    assert shown(client, studies, f"assigned={rad.pk}") == {"today_mr"}

    assert client.post(f"/worklist/studies/{uid}/priority", {"priority": "stat"}).status_code == 302
    assert client.post(f"/worklist/studies/{uid}/priority", {"priority": "whenever"}).status_code == 400
    assert Study.objects.get(study_instance_uid=uid).priority == "stat"
    assert shown(client, studies, "priority=stat") == {"today_mr"}

    client.get(f"/studies/{uid}/")  # a radiologist opening it: in progress
    assert Study.objects.get(study_instance_uid=uid).status == "in_progress"
    assert shown(client, studies, "status=in_progress") == {"today_mr"}
    assert shown(client, studies, "status=unread") == {"old_ct", "yday_ct"}
    html = client.get("/?modality=CT").content.decode()
    counts = dict(re.findall(r">([A-Za-z ]+) <span class=\"count\">(\d+)</span>", html))
    assert counts == {"All": "2", "Unread": "2", "In progress": "0", "Reported": "0", "Final": "0"}

    actions = set(AuditEvent.objects.filter(object_id=uid).values_list("action", flat=True))
    assert {"study.assign", "study.priority", "study.view"} <= actions
    client.post(f"/worklist/studies/{uid}/assign", {"to": "none"})
    assert Study.objects.get(study_instance_uid=uid).assigned_to is None


def test_actions_follow_roles(studies: dict[str, str]) -> None:
    _, ref = user_with("referrer")
    uid = studies["old_ct"]
    assert ref.post(f"/worklist/studies/{uid}/assign", {"to": "me"}).status_code == 403
    assert ref.post(f"/worklist/studies/{uid}/priority", {"priority": "stat"}).status_code == 403
    html = ref.get("/").content.decode()
    assert "Assign to me" not in html
    assert "priority-select" not in html
    _, tech = user_with("technologist")
    assert tech.post(f"/worklist/studies/{uid}/assign", {"to": "me"}).status_code == 403
    assert tech.post(f"/worklist/studies/{uid}/priority", {"priority": "urgent"}).status_code == 302
    assert Study.objects.get(study_instance_uid=uid).priority == "urgent"


def test_row_fragment_honours_the_pages_filters(studies: dict[str, str]) -> None:
    _, client = user_with("radiologist")
    uid = studies["old_ct"]
    assert client.get(f"/worklist/rows/{uid}/?modality=CT").status_code == 200
    assert client.get(f"/worklist/rows/{uid}/?modality=MR").status_code == 204
    assert client.get("/worklist/rows/1.2.3.4/").status_code == 404


def test_next_never_leaves_the_site(studies: dict[str, str]) -> None:
    _, client = user_with("radiologist")
    response = client.post(
        f"/worklist/studies/{studies['old_ct']}/assign", {"to": "me", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"
