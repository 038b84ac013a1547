"""The worklist pages: login required, DICOM text escaped, filters, row fragments, thumbnails, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client
from pydicom.uid import generate_uid

from noctis_pro.ai.models import AIAnalysis
from noctis_pro.core.models import AuditEvent
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt, Series
from noctis_pro.pacs.tasks import series_thumbnail

pytestmark = pytest.mark.django_db

XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture
def radiologist(client: Client) -> User:
    user = User.objects.create_user("reader", password="a-long-test-password")
    user.groups.add(Group.objects.get_or_create(name="radiologist")[0])  # a role (contracts.roles) to see studies
    client.force_login(user)
    return user


def indexed(archive: Callable[..., Receipt], **kwargs: object) -> Receipt:
    receipt = archive(**kwargs)
    receipts_index(receipt_ids=[receipt.pk])
    return receipt


@pytest.mark.parametrize(
    "url", ["/", "/studies/1.2.3/", "/worklist/rows/1.2.3/", "/worklist/thumbnails/1.2.3.png", "/admin/"]
)
def test_pages_redirect_anonymous_visitors_to_login(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/") or response["Location"].startswith("/admin/login/")


def test_login_page_and_logout_by_post(client: Client) -> None:
    reader = User.objects.create_user("reader", password="a-long-test-password")
    reader.groups.add(Group.objects.get_or_create(name="radiologist")[0])
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    response = client.post("/login/", {"username": "reader", "password": "a-long-test-password"})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/logout/").status_code == 405  # logging out is a POST (CSRF-protected)
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_worklist_escapes_dicom_text(client: Client, radiologist: User, archive: Callable[..., Receipt]) -> None:
    receipt = indexed(archive, patient_name=XSS_NAME, StudyDescription="<script>alert(2)</script>")
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert receipt.study_instance_uid in html
    assert XSS_NAME not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") == 2  # the shown name and its title
    assert "<script>alert(2)</script>" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_worklist_lists_and_filters_studies(client: Client, radiologist: User, archive: Callable[..., Receipt]) -> None:
    ct = indexed(archive, modality="CT", patient_name="Smith^John", patient_id="P-CT", AccessionNumber="A-1")
    mr = indexed(archive, modality="MR", patient_name="Jones^Mary", patient_id="P-MR", StudyDate="20250301")

    def shown(**params: str) -> set[str]:
        html = client.get("/", params).content.decode()
        return {uid for uid in (ct.study_instance_uid, mr.study_instance_uid) if uid in html}

    assert shown() == {ct.study_instance_uid, mr.study_instance_uid}
    assert shown(patient_name="smi*") == {ct.study_instance_uid}
    assert shown(patient_name="ONES") == {mr.study_instance_uid}
    assert shown(patient_name="*^MAR?") == {mr.study_instance_uid}
    assert shown(patient_name="100%") == set()
    assert shown(patient_id="P-MR") == {mr.study_instance_uid}
    assert shown(accession_number="A-1") == {ct.study_instance_uid}
    assert shown(modality="mr") == {mr.study_instance_uid}
    assert shown(date_from="2026-01-01") == {ct.study_instance_uid}
    assert shown(date_to="2025-12-31") == {mr.study_instance_uid}
    assert shown(ordering="bogus") == {ct.study_instance_uid, mr.study_instance_uid}
    assert shown(patient_id="P-MR", date_from="not-a-date") == {mr.study_instance_uid}  # bad field ignored only


def test_worklist_pages(client: Client, radiologist: User, archive: Callable[..., Receipt]) -> None:
    receipts = [archive(instance_number=1) for _ in range(55)]
    receipts_index(receipt_ids=[r.pk for r in receipts])
    first = client.get("/").content.decode()
    second = client.get("/", {"page": 2}).content.decode()
    assert first.count("data-study-uid=") == 50
    assert second.count("data-study-uid=") == 5
    assert "Page 2 of 2" in second


def test_worklist_view_is_audited(client: Client, radiologist: User) -> None:
    client.get("/", {"patient_id": "P-9"})
    event = AuditEvent.objects.get(action="study.list")
    assert event.user == radiologist
    assert event.username == "reader"
    assert event.detail["filters"] == {"patient_id": "P-9"}
    assert event.remote_addr == "127.0.0.1"


def test_row_fragment_is_one_escaped_row(client: Client, radiologist: User, archive: Callable[..., Receipt]) -> None:
    receipt = indexed(archive, patient_name=XSS_NAME)
    response = client.get(f"/worklist/rows/{receipt.study_instance_uid}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("<tr") == 1
    assert f'data-study-uid="{receipt.study_instance_uid}"' in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert client.get(f"/worklist/rows/{generate_uid()}/").status_code == 404
    assert client.get("/worklist/rows/not-a-uid/").status_code == 404


def test_thumbnail_view_serves_the_png_or_404(
    client: Client, radiologist: User, archive: Callable[..., Receipt]
) -> None:
    receipt = indexed(archive)
    url = f"/worklist/thumbnails/{receipt.series_instance_uid}.png"
    assert client.get(url).status_code == 404
    relpath = series_thumbnail(receipt.series_instance_uid)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == (settings.MEDIA_ROOT / relpath).read_bytes()
    assert url in client.get("/").content.decode()  # the worklist row shows it
    Series.objects.filter(series_instance_uid=receipt.series_instance_uid).update(thumbnail="")
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    "model", ["pacs/patient", "pacs/study", "pacs/series", "pacs/instance", "pacs/receipt", "core/auditevent",
              "accounts/apitoken", "ai/aianalysis", "pacs/node", "pacs/forwardrule"],
)  # fmt: skip
def test_admin_lists_render_and_index_rows_are_read_only(
    client: Client, archive: Callable[..., Receipt], model: str
) -> None:
    admin = User.objects.create_superuser("root", password="a-long-test-password")
    client.force_login(admin)
    indexed(archive)
    assert client.get(f"/admin/{model}/").status_code == 200
    editable = model in {"pacs/node", "pacs/forwardrule", "ai/aianalysis"}
    if editable:
        assert client.get(f"/admin/{model}/add/").status_code == 200
    elif model.startswith(("pacs/", "core/")):
        assert client.get(f"/admin/{model}/add/").status_code == 403


def test_study_page_shows_series_and_analyses_and_is_audited(
    client: Client, radiologist: User, archive: Callable[..., Receipt]
) -> None:

    study_uid = generate_uid()
    ct = indexed(archive, study_uid=study_uid, modality="CT", SeriesDescription="Thorax <b>axial</b>")
    indexed(archive, study_uid=study_uid, modality="MR", patient_name=XSS_NAME)
    series_thumbnail(ct.series_instance_uid)
    AIAnalysis.objects.filter(study__study_instance_uid=study_uid).delete()
    AIAnalysis.objects.create(
        study_id=Series.objects.get(series_instance_uid=ct.series_instance_uid).study_id, analyzer="study_inventory",
        status="done", result={"series_count": 2, "instance_count": 2, "complete": True},
    )  # fmt: skip

    response = client.get(f"/studies/{study_uid}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("data-series-uid=") == 2
    assert f"/worklist/thumbnails/{ct.series_instance_uid}.png" in html
    assert "Thorax &lt;b&gt;axial&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert XSS_NAME not in html
    assert "2 series, 2 images, no gaps" in html
    event = AuditEvent.objects.get(action="study.view")
    assert (event.object_type, event.object_id, event.username) == ("study", study_uid, "reader")
    assert client.get(f"/studies/{generate_uid()}/").status_code == 404
    assert f'href="/studies/{study_uid}/"' in client.get("/").content.decode()


def test_worklist_queries_do_not_grow_with_rows(
    client: Client, radiologist: User, archive: Callable[..., Receipt], django_assert_max_num_queries: Any
) -> None:
    receipts = [archive() for _ in range(30)]
    receipts_index(receipt_ids=[r.pk for r in receipts])
    with django_assert_max_num_queries(12):
        response = client.get("/")
    assert response.content.decode().count("data-study-uid=") == 30
