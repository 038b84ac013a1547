"""Anonymised exports through the real services and files: request (role and facility rule), build, download,
expiry. The Celery worker's part (a real worker on the real broker) is in tests/e2e/test_lifecycle.py."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from noctis_pro.core.models import AuditEvent
from noctis_pro.exports.models import Export
from noctis_pro.exports.services import (
    ExportError,
    ExportForbiddenError,
    ExportUnavailableError,
    export_build,
    export_for_download,
    export_path,
    export_request,
    exports_expire,
)
from noctis_pro.facilities.models import Facility

pytestmark = pytest.mark.django_db

ORIGINAL = {"patient_name": "Export^Eve", "patient_id": "MRN-EXP-1"}


@pytest.fixture(autouse=True)
def export_root(tmp_path: Path, settings: Any) -> Path:
    settings.EXPORT_ROOT = tmp_path / "exports"
    return Path(settings.EXPORT_ROOT)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_an_export_holds_every_instance_de_identified(
    indexed_study: Callable[..., str], user_with_role: Callable[[str], User], django_capture_on_commit_callbacks: Any
) -> None:
    study_uid = indexed_study(n=4, **ORIGINAL)
    user = user_with_role("radiologist")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        export = export_request(user=user, study_uids=[study_uid])
    assert len(queued) == 1  # the build is queued once the row is committed
    result = export_build(export.id)
    assert (result.done, result.skipped) == (4, 0)

    export.refresh_from_db()
    assert export.status == "done"
    assert export.instances_done == export.instances_total == 4
    _, path = export_for_download(user=user, export_id=export.id)
    files = members(path)
    dicoms = [pydicom.dcmread(io.BytesIO(data)) for name, data in files.items() if name.endswith(".dcm")]
    assert len(dicoms) == 4
    assert "manifest.json" in files
    for ds in dicoms:
        assert str(ds.PatientName) != "Export^Eve"
        assert ds.PatientID != "MRN-EXP-1"
        assert ds.StudyDate == ""
        assert ds.PatientBirthDate == ""
        assert ds.StudyInstanceUID != study_uid
        assert ds.pixel_array.shape == (64, 64)
    assert len({ds.StudyInstanceUID for ds in dicoms}) == 1  # remapped consistently
    for name, data in files.items():
        for secret in (b"Export^Eve", b"MRN-EXP-1", b"20260115"):
            assert secret not in data, name
        assert study_uid not in name


def test_burned_in_annotation_is_left_out_and_counted(
    indexed_study: Callable[..., str], user_with_role: Callable[[str], User]
) -> None:
    study_uid = indexed_study(n=2, BurnedInAnnotation="YES")
    export = export_request(user=user_with_role("radiologist"), study_uids=[study_uid])
    result = export_build(export.id)
    assert (result.done, result.skipped) == (0, 2)
    assert b'"burned-in annotation": 2' in members(export_path(export))["manifest.json"]


def test_who_may_export_what(indexed_study: Callable[..., str], user_with_role: Callable[[str], User]) -> None:
    study_uid = indexed_study(n=1)
    with pytest.raises(ExportForbiddenError):
        export_request(user=user_with_role("referrer"), study_uids=[study_uid])
    with pytest.raises(ExportError, match="no such study"):
        export_request(user=user_with_role("radiologist"), study_uids=["1.2.3.4"])
    with pytest.raises(ExportError, match="not a UID"):
        export_request(user=user_with_role("radiologist"), study_uids=["../etc"])
    # The study came from an AE no facility claims: a member of some facility does not see it, so cannot export it.
    other = user_with_role("radiologist")
    other.facilities.add(Facility.objects.create(name="Mine"))  # type: ignore[attr-defined]
    with pytest.raises(ExportError, match="no such study"):
        export_request(user=other, study_uids=[study_uid])


def test_only_the_owner_downloads_until_it_expires(
    indexed_study: Callable[..., str], user_with_role: Callable[[str], User], client: Client
) -> None:
    owner, stranger = user_with_role("radiologist"), user_with_role("radiologist")
    export = export_request(user=owner, study_uids=[indexed_study(n=1)])
    with pytest.raises(ExportUnavailableError, match="export is pending"):
        export_for_download(user=owner, export_id=export.id)
    export_build(export.id)
    with pytest.raises(ExportUnavailableError, match="no such export"):
        export_for_download(user=stranger, export_id=export.id)

    client.force_login(owner)
    response = client.get(f"/exports/{export.id}/download/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).testzip() is None
    assert AuditEvent.objects.filter(action="export.download", object_id=str(export.id), username=owner.username)
    client.force_login(stranger)
    assert client.get(f"/exports/{export.id}/download/").status_code == 404

    _, path = export_for_download(user=owner, export_id=export.id)
    assert exports_expire(now=timezone.now() + dt.timedelta(hours=25)) == 1
    assert not path.exists()
    assert Export.objects.get(pk=export.id).status == "expired"
    client.force_login(owner)
    assert client.get(f"/exports/{export.id}/download/").status_code == 404


def test_the_study_page_button_queues_an_export(
    indexed_study: Callable[..., str], user_with_role: Callable[[str], User], client: Client
) -> None:
    study_uid = indexed_study(n=1)
    client.force_login(user_with_role("radiologist"))
    assert b'id="export-study"' in client.get(f"/studies/{study_uid}/").content
    response = client.post("/exports/new/", {"study_uid": study_uid}, follow=True)
    assert response.status_code == 200
    export = Export.objects.get()
    assert export.study_uids == [study_uid]
    assert b"pending" in response.content
    assert AuditEvent.objects.filter(action="export.create", object_id=str(export.id)).exists()
    client.force_login(user_with_role("referrer"))
    assert b'id="export-study"' not in client.get(f"/studies/{study_uid}/").content
    assert client.post("/exports/new/", {"study_uid": study_uid}).status_code == 403
