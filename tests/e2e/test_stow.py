"""STOW-RS through the whole stack: nginx → FastAPI → the SCP (C-STORE) → receipt → webhook → Django indexing →
QIDO. An instance uploaded by a DICOMweb client and one sent by a modality (storescu) end up alike."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from noctis_pro.contracts.storage import instance_relpath
from tests.conftest import make_dataset, write_dataset
from tests.stack import Stack

pytestmark = pytest.mark.e2e
INDEX_TIMEOUT_SECONDS = 30


def test_stow_through_the_stack_is_indexed_like_a_c_store(stack: Stack, api_token: str, tmp_path: Path) -> None:
    study = generate_uid()
    series = generate_uid()
    by_modality = make_dataset(study_uid=study, series_uid=series, patient_id="E2E-STOW-1", instance_number=1)
    by_stow = make_dataset(study_uid=study, series_uid=series, patient_id="E2E-STOW-1", instance_number=2)
    sent = subprocess.run(
        ["storescu", "-aec", stack.ae_title, "-aet", "MODALITY1", "127.0.0.1", str(stack.dicom_port),
         str(write_dataset(by_modality, tmp_path / "modality.dcm"))],
        capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"}, timeout=60, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    client = DICOMwebClient(url=f"{stack.base_url}/api/v1/dicomweb", headers={"Authorization": f"Bearer {api_token}"})

    response = client.store_instances([by_stow])

    # 200 means stored: the file is there, in the C-STORE layout, before any indexing.
    assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [by_stow.SOPInstanceUID]
    stored = stack.storage_root / instance_relpath(
        study_uid=study, series_uid=series, sop_instance_uid=by_stow.SOPInstanceUID
    )
    assert pydicom.dcmread(stored).SOPInstanceUID == by_stow.SOPInstanceUID
    found: dict[str, dict] = {}
    deadline = time.monotonic() + INDEX_TIMEOUT_SECONDS
    while len(found) < 2 and time.monotonic() < deadline:
        found = {item["00080018"]["Value"][0]: item for item in client.search_for_instances(study_instance_uid=study)}
        time.sleep(0.2)
    assert set(found) == {by_modality.SOPInstanceUID, by_stow.SOPInstanceUID}, stack.log_tail()
    modality_item, stow_item = found[by_modality.SOPInstanceUID], found[by_stow.SOPInstanceUID]
    assert set(modality_item) == set(stow_item)
    for tag in set(modality_item) - {"00080018", "00200013", "00081190"}:
        assert modality_item[tag] == stow_item[tag], tag
    studies = client.search_for_studies(search_filters={"PatientID": "E2E-STOW-1"})
    assert [s["0020000D"]["Value"][0] for s in studies] == [study]
    assert studies[0]["00201208"]["Value"] == [2]  # NumberOfStudyRelatedInstances
    retrieved = client.retrieve_instance(study, series, by_stow.SOPInstanceUID)
    assert retrieved.PatientID == "E2E-STOW-1"

    # The Celery worker builds the series' metadata cache once the series is quiet; it then answers the same.
    metadata = client.retrieve_series_metadata(study, series)
    probe = (
        "from noctis_pro.pacs.models import SeriesMetadata as M;"
        f"print(M.objects.filter(series__series_instance_uid='{series}').values_list('instance_count', flat=True)"
        ".first())"
    )
    cached = None
    deadline = time.monotonic() + INDEX_TIMEOUT_SECONDS
    while cached != "2" and time.monotonic() < deadline:
        cached = stack.manage("shell", "-c", probe).stdout.strip()
        time.sleep(0.5)
    assert cached == "2", stack.log_tail()
    assert client.retrieve_series_metadata(study, series) == metadata
