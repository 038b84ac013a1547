"""Exports and retention on the real stack: the Celery worker (real Redis broker, not eager) builds an anonymised
export asked for through /api/v1; `manage.py retention` deletes what its dry run listed, files and index."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.e2e.test_ingest import make_study, storescu, wait_for_instances
from tests.stack import Stack

pytestmark = pytest.mark.e2e
EXPORT_TIMEOUT_SECONDS = 60


def test_export_through_the_api_is_built_by_the_worker_and_holds_no_identifiers(
    stack: Stack, api_token: str, tmp_path: Path
) -> None:
    study_uid, files = make_study(tmp_path, patient_id="EXPORT-E2E-77", per_series=2)
    assert storescu(stack, files).returncode == 0
    assert wait_for_instances(stack, study_uid, len(files)) == len(files)
    originals = [pydicom.dcmread(f) for f in files]
    headers = {"Authorization": f"Bearer {api_token}"}

    with httpx.Client(base_url=stack.base_url + "/api/v1", headers=headers, timeout=30) as client:
        assert client.post("/exports", json={"study_uids": ["1.2.3"]}).status_code == 404
        assert client.post("/exports", json={"study_uids": ["a/b"]}).status_code == 400
        created = client.post("/exports", json={"study_uids": [study_uid]})
        assert created.status_code == 202, created.text
        export_id = created.json()["id"]
        deadline = time.monotonic() + EXPORT_TIMEOUT_SECONDS
        state = created.json()
        while state["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.3)
            state = client.get(f"/exports/{export_id}").json()
        assert state["status"] == "done", state
        assert state["instances_done"] == len(files)
        assert state["download_url"]
        download = client.get(f"/exports/{export_id}/download")
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/zip"
        assert client.get(f"/exports/{export_id}/download", headers={"Authorization": "Bearer nope"}).status_code == 401

    with zipfile.ZipFile(io.BytesIO(download.content)) as zf:
        names = [n for n in zf.namelist() if n.endswith(".dcm")]
        datasets = [pydicom.dcmread(io.BytesIO(zf.read(n))) for n in names]
        raw = b"".join(zf.read(n) for n in zf.namelist())
    assert len(datasets) == len(files)
    for original in originals[:1]:
        for value in (str(original.PatientName), original.PatientID, original.StudyDate, original.PatientBirthDate):
            assert value.encode() not in raw, value
    assert study_uid.encode() not in raw
    for ds in datasets:
        assert ds.PatientIdentityRemoved == "YES"
        ds.pixel_array  # noqa: B018 (decodes: the images are usable, JPEG included)


def test_retention_dry_run_matches_what_is_then_deleted(stack: Stack, api_token: str, tmp_path: Path) -> None:
    study_uid, files = make_study(tmp_path, patient_id="RETAIN-E2E-1", per_series=1)
    for f in files:  # an old study: scanned in 2001
        ds = pydicom.dcmread(f)
        ds.StudyDate = "20010101"
        ds.save_as(f)
    assert storescu(stack, files).returncode == 0
    assert wait_for_instances(stack, study_uid, len(files)) == len(files)
    stack.manage(
        "shell",
        "-c",
        "from noctis_pro.retention.models import RetentionPolicy; "
        "RetentionPolicy.objects.update_or_create(name='e2e-20y', defaults={'older_than_days': 7300})",
    )
    plan = json.loads(stack.manage("retention", "--policy", "e2e-20y", "--json").stdout)
    planned = {p["study_uid"] for p in plan}
    assert study_uid in planned
    stored = [stack.storage_root / study_uid]
    assert stored[0].is_dir()

    applied = stack.manage("retention", "--policy", "e2e-20y", "--apply", "--json").stdout
    result = json.loads(applied[applied.index("{\n") :])
    assert set(result["deleted"]) == planned
    assert not result["skipped"]
    assert not stored[0].exists()
    response = httpx.get(
        f"{stack.base_url}/api/v1/studies/{study_uid}", headers={"Authorization": f"Bearer {api_token}"}, timeout=10
    )
    assert response.status_code == 404
