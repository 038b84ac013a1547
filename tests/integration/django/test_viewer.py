"""The viewer page: role and login required, 404 for unknown studies, audited, DICOM text escaped, the bundle and
what it needs to start (DICOMweb root, study, series) handed over as JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from noctis_pro.core.models import AuditEvent
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt

pytestmark = pytest.mark.django_db

XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture
def radiologist(client: Client) -> User:
    user = User.objects.create_user("reader", password="a-long-test-password")
    user.groups.add(Group.objects.get_or_create(name="radiologist")[0])
    client.force_login(user)
    return user


def viewer_config(html: str) -> dict[str, object]:
    found = re.search(r'<script id="viewer-config" type="application/json">(.*?)</script>', html, re.S)
    assert found, "the page hands the bundle its configuration"
    return json.loads(found.group(1))


def test_viewer_opens_a_study_and_audits_it(client: Client, radiologist: User, archive: Callable[..., Receipt]) -> None:
    receipt = archive(patient_name=XSS_NAME, SeriesDescription="</script><script>alert(3)</script>")
    receipts_index(receipt_ids=[receipt.pk])
    response = client.get(f"/studies/{receipt.study_instance_uid}/view")
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'src="/static/viewer/viewer\.js\?v=[0-9a-f]{12}"', html), "the entry URL changes with each build"
    assert XSS_NAME not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert(3)</script>" not in html  # json_script escapes <, > and & inside the JSON
    config = viewer_config(html)
    assert config["dicomwebRoot"] == "/api/v1/dicomweb"
    assert config["studyUid"] == receipt.study_instance_uid
    assert config["series"] == [
        {
            "uid": receipt.series_instance_uid,
            "number": 1,
            "modality": "CT",
            "description": "</script><script>alert(3)</script>",
            "count": 1,
        }
    ]
    event = AuditEvent.objects.get(action="study.view", object_id=receipt.study_instance_uid)
    assert event.user == radiologist
    assert event.detail == {"via": "viewer"}


@pytest.mark.parametrize("uid", ["1.2.3.4", "not-a-uid", "1." * 40])
def test_viewer_unknown_or_invalid_study_is_404(client: Client, radiologist: User, uid: str) -> None:
    assert client.get(f"/studies/{uid}/view").status_code == 404
    assert not AuditEvent.objects.filter(action="study.view").exists()


def test_viewer_needs_a_login_and_a_role(client: Client, archive: Callable[..., Receipt]) -> None:
    receipt = archive()
    receipts_index(receipt_ids=[receipt.pk])
    url = f"/studies/{receipt.study_instance_uid}/view"
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/")
    client.force_login(User.objects.create_user("nobody", password="a-long-test-password"))  # no role
    assert client.get(url).status_code == 403
    assert client.post(url).status_code in (403, 405)
