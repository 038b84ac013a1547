"""The worklist's AI badge (counts by status, a text summary per analysis from the stored result) and the study
page's Analyse action (role-checked, audited, the API's queueing rules)."""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from pydicom.uid import generate_uid

from noctis_pro.ai.models import AIAnalysis
from noctis_pro.core.models import AuditEvent
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt, Series, Study

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert('ai')</script>"


def user_with_role(client: Client, role: str) -> User:
    user = User.objects.create_user(f"ai_{role}", password="a-long-test-password")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client.force_login(user)
    return user


@pytest.fixture
def radiologist(client: Client) -> User:
    return user_with_role(client, "radiologist")


def study_indexed(archive: Callable[..., Receipt], **kwargs: Any) -> Study:
    """A study through the real indexing path, without the analyses AI_AUTO_ANALYZERS queued (tests add theirs)."""
    receipt = archive(**kwargs)
    receipts_index(receipt_ids=[receipt.pk])
    AIAnalysis.objects.filter(study__study_instance_uid=receipt.study_instance_uid).delete()
    return Study.objects.get(study_instance_uid=receipt.study_instance_uid)


def badge(html: str, study_uid: str) -> tuple[str, str]:
    """(badge text, tooltip) of the study's row, unescaped."""
    row = re.search(rf'<tr data-study-uid="{re.escape(study_uid)}".*?</tr>', html, re.S)
    assert row, "the study's row"
    found = re.search(r'<td class="ai"><span class="badge ai-\w+" title="([^"]*)">([^<]*)</span>', row.group(0))
    assert found, row.group(0)
    return htmllib.unescape(found.group(2)), htmllib.unescape(found.group(1))


def test_badge_counts_statuses_and_summarises_results(
    client: Client, radiologist: User, archive: Callable[..., Receipt]
) -> None:
    study = study_indexed(archive, modality="CT")
    series = Series.objects.get(study=study)
    make = AIAnalysis.objects.create
    make(study=study, series=series, analyzer="series_completeness", status="done",
         result={"instances": 20, "missing_instance_numbers": [12, 13, 14], "complete": False})  # fmt: skip
    make(study=study, analyzer="radiation_dose", status="done", result={"ctdivol_max_mgy": 12.3456})
    make(study=study, series=series, analyzer="image_quality", status="running")
    make(study=study, analyzer="study_inventory", status="done", result={"series_count": 1})
    make(study=study, analyzer="study_inventory", status="failed", error="OSError: file gone\ntraceback")  # newer
    make(study=study, series=series, analyzer="tiny_model", status="pending")

    text, title = badge(client.get("/").content.decode(), study.study_instance_uid)

    assert text == "AI: 2 done, 1 running, 1 pending, 1 failed"  # the newest inventory run replaced the older
    lines = title.splitlines()
    assert f"completeness #{series.series_number}: gap at 12-14" in lines
    assert "dose: CTDIvol 12.3 mGy" in lines
    assert "inventory: failed (OSError: file gone)" in lines
    assert f"quality #{series.series_number}: running" in lines
    assert len(lines) == 5
    row = client.get(f"/worklist/rows/{study.study_instance_uid}/").content.decode()
    assert badge(row, study.study_instance_uid) == (text, title), "the live row fragment shows the same badge"


def test_study_without_analyses_has_no_badge(
    client: Client, radiologist: User, archive: Callable[..., Receipt]
) -> None:
    study = study_indexed(archive)
    row = client.get(f"/worklist/rows/{study.study_instance_uid}/").content.decode()
    assert '<td class="ai"><span class="muted">' in row
    assert "AI:" not in row


def test_badge_escapes_findings(client: Client, radiologist: User, archive: Callable[..., Receipt]) -> None:
    study = study_indexed(archive)
    AIAnalysis.objects.create(study=study, analyzer="tiny_model", status="done",
                              result={"top_label": SCRIPT, "outputs": {SCRIPT: 0.9}})  # fmt: skip
    AIAnalysis.objects.create(study=study, analyzer=SCRIPT, status="failed", error=f"bad {SCRIPT}")

    page = client.get("/").content.decode()

    assert "<script>alert" not in page
    text, title = badge(page, study.study_instance_uid)
    assert text == "AI: 1 done, 1 failed"
    assert f"tiny_model: {SCRIPT} 0.90" in title.splitlines()
    assert f"{SCRIPT}: failed (bad {SCRIPT})" in title.splitlines()


def test_worklist_badges_take_one_query_per_page(
    client: Client, radiologist: User, archive: Callable[..., Receipt], django_assert_max_num_queries: Any
) -> None:
    receipts = [archive() for _ in range(30)]
    receipts_index(receipt_ids=[r.pk for r in receipts])
    AIAnalysis.objects.all().delete()
    for study in Study.objects.all():
        AIAnalysis.objects.create(study=study, analyzer="radiation_dose", status="done", result={"ctdivol_max_mgy": 5})
        AIAnalysis.objects.create(study=study, analyzer="study_inventory", status="pending")
    with django_assert_max_num_queries(13) as captured:  # the worklist's 12 before badges, plus one
        page = client.get("/").content.decode()
    assert page.count("AI: 1 done, 1 pending") == 30
    assert sum("ai_analysis" in q["sql"] for q in captured.captured_queries) == 1


def test_analyse_action_queues_per_image_series_and_is_audited(
    client: Client, radiologist: User, archive: Callable[..., Receipt]
) -> None:
    study_uid = generate_uid()
    study_indexed(archive, study_uid=study_uid, modality="CT")
    study = study_indexed(archive, study_uid=study_uid, modality="MR")
    page = client.get(f"/studies/{study_uid}/").content.decode()
    assert 'id="analyse-form"' in page
    assert '<option value="series_completeness">' in page

    response = client.post(f"/studies/{study_uid}/analyses", {"analyzer": "series_completeness"})

    assert response.status_code == 302
    assert response["Location"] == f"/studies/{study_uid}/#analyses"
    queued = AIAnalysis.objects.filter(study=study, analyzer="series_completeness")
    assert sorted(queued.values_list("status", "requested_by")) == [("pending", "ui:ai_radiologist")] * 2
    assert queued.values("series_id").distinct().count() == 2, "one per image series"
    client.post(f"/studies/{study_uid}/analyses", {"analyzer": "series_completeness"})
    assert queued.count() == 2, "an analysis that already waits is not queued twice"
    event = AuditEvent.objects.filter(action="study.analysis.request").first()
    assert event is not None
    assert (event.object_id, event.username, event.detail["queued"]) == (study_uid, "ai_radiologist", 2)
    assert "AI: 2 pending" in client.get(f"/worklist/rows/{study_uid}/").content.decode()


def test_analyse_action_refuses_bad_requests(
    client: Client, radiologist: User, archive: Callable[..., Receipt]
) -> None:
    study = study_indexed(archive, modality="CT")
    uid = study.study_instance_uid
    unknown = client.post(f"/studies/{uid}/analyses", {"analyzer": "no_such"})
    assert (unknown.status_code, "unknown analyzer 'no_such'" in unknown.content.decode()) == (400, True)
    series_uid = Series.objects.get(study=study).series_instance_uid
    whole = client.post(f"/studies/{uid}/analyses", {"analyzer": "radiation_dose", "series_uid": series_uid})
    assert whole.status_code == 400
    assert "whole study" in whole.content.decode()
    other = client.post(f"/studies/{uid}/analyses", {"analyzer": "image_quality", "series_uid": generate_uid()})
    assert other.status_code == 400
    assert client.post(f"/studies/{generate_uid()}/analyses", {"analyzer": "image_quality"}).status_code == 404
    assert not AIAnalysis.objects.filter(study=study).exists()
    assert not AuditEvent.objects.filter(action="study.analysis.request").exists()


@pytest.mark.parametrize("role", ["technologist", "referrer"])
def test_analyse_action_is_for_radiologists_and_admins(
    client: Client, archive: Callable[..., Receipt], role: str
) -> None:
    user_with_role(client, role)
    study = study_indexed(archive, modality="CT")
    assert 'id="analyse-form"' not in client.get(f"/studies/{study.study_instance_uid}/").content.decode()
    response = client.post(f"/studies/{study.study_instance_uid}/analyses", {"analyzer": "image_quality"})
    assert response.status_code == 403
    assert not AIAnalysis.objects.filter(study=study).exists()
