"""Orthanc (Debian's package) as the other PACS, started on loopback beside the real stack: we send a study to it
(asked through /api/v1, and by a routing rule on arrival) and see it in its REST API, query it from /api/v1
(remote C-FIND), and C-MOVE a study from it into ours.

One Orthanc per module (temp storage, free HTTP and DICOM ports), our stack's AE registered in its
DicomModalities so it accepts our C-FIND/C-MOVE and knows where to send; Orthanc registered as a node through
/api/v1/nodes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, StoragePresentationContexts

from ops.launch import free_port
from ops.orthanc import Orthanc
from tests.conftest import make_dataset, write_dataset
from tests.e2e.test_ingest import wait_for_instances
from tests.integration.nodes.conftest import dataset_bytes
from tests.stack import Stack

pytestmark = pytest.mark.e2e
ORTHANC_AE_TITLE = "ORTHANC"
TRANSFER_TIMEOUT_SECONDS = 60


def _orthanc_config(workdir: Path, *, http_port: int, dicom_port: int, stack: Stack) -> dict[str, object]:
    return {
        "Name": "noctis-test-peer",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "StorageCompression": False,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # loopback only
        "AuthenticationEnabled": False,
        "DicomAet": ORTHANC_AE_TITLE,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": False,  # only from the modalities below
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowMove": False,
        "DicomCheckModalityHost": True,
        # Our archive: it may store, query and move, and is the destination of a C-MOVE to its AE title.
        "DicomModalities": {"noctis": [stack.ae_title, "127.0.0.1", stack.dicom_port]},
        "SaveJobs": False,
        "Plugins": [],
    }


@pytest.fixture(scope="module")
def orthanc(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(binary).exists():
        pytest.fail("Orthanc is not installed: ops/install-system.sh test installs Debian's orthanc")
    workdir = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port = free_port(), free_port()
    config_path = workdir / "orthanc.json"
    config = _orthanc_config(workdir, http_port=http_port, dicom_port=dicom_port, stack=stack)
    config_path.write_text(json.dumps(config))
    log_path = workdir / "orthanc.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    peer = Orthanc(proc, http_port, dicom_port, log_path)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{peer.base_url}/system", timeout=2).status_code == 200:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            peer.stop(timeout=5)
            pytest.fail(f"Orthanc did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    yield peer
    peer.stop()


class Api:
    def __init__(self, stack: Stack, token: str) -> None:
        self.client = httpx.Client(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )  # fmt: skip

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def transfer_settled(self, transfer_id: int) -> dict[str, Any]:
        deadline = time.monotonic() + TRANSFER_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            transfer = self("GET", f"/api/v1/transfers/{transfer_id}").json()
            if transfer["status"] in ("done", "failed"):
                return transfer
            time.sleep(0.25)
        raise AssertionError(f"transfer {transfer_id} not settled: {transfer}")


@pytest.fixture(scope="module")
def api(stack: Stack, api_token: str) -> Iterator[Api]:
    client = Api(stack, api_token)
    yield client
    client.client.close()


@pytest.fixture(scope="module")
def orthanc_node(api: Api, orthanc: Orthanc) -> dict[str, Any]:
    body = {"name": "orthanc", "ae_title": ORTHANC_AE_TITLE, "host": "127.0.0.1", "port": orthanc.dicom_port}
    created = api("POST", "/api/v1/nodes", json=body)
    assert created.status_code == 201, created.text
    echo = api("POST", f"/api/v1/nodes/{created.json()['id']}/echo").json()
    assert echo["ok"], echo
    return created.json()


def _study(directory: Path, *, patient_name: str, patient_id: str, count: int = 3) -> tuple[str, list[Path]]:
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [
        write_dataset(
            make_dataset(
                study_uid=study_uid,
                series_uid=series_uid,
                instance_number=n,
                patient_name=patient_name,
                patient_id=patient_id,
            ),
            directory / f"{n}.dcm",
        )
        for n in range(1, count + 1)
    ]
    return study_uid, files


def _orthanc_study(orthanc: Orthanc, study_uid: str) -> dict[str, Any] | None:
    found = httpx.post(
        f"{orthanc.base_url}/tools/find",
        json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
        timeout=10,
    ).json()
    return found[0] if found else None


def test_a_study_sent_to_orthanc_is_in_its_rest_api(
    stack: Stack, api: Api, orthanc: Orthanc, orthanc_node: dict[str, Any], tmp_path: Path
) -> None:
    study_uid, files = _study(tmp_path, patient_name="Send^Orthanc", patient_id="E2E-ORTHANC-SEND")
    ae = AE(ae_title="MODALITY1")
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert assoc.is_established
    statuses = [assoc.send_c_store(path).Status for path in files]
    assoc.release()
    assert statuses == [0, 0, 0]
    assert wait_for_instances(stack, study_uid, 3) == 3

    sent = api("POST", f"/api/v1/studies/{study_uid}/send", json={"node": "orthanc"})
    assert sent.status_code == 202, sent.text
    transfer = api.transfer_settled(sent.json()["id"])
    assert (transfer["status"], transfer["completed"], transfer["failed"], transfer["total"]) == ("done", 3, 0, 3)

    study = _orthanc_study(orthanc, study_uid)
    assert study is not None
    assert study["MainDicomTags"]["StudyInstanceUID"] == study_uid
    instances = httpx.get(f"{orthanc.base_url}/studies/{study['ID']}/instances", timeout=10).json()
    assert len(instances) == 3
    # Sent as stored: each instance's data set is the bytes our archive holds.
    ours = {dataset_bytes(path) for path in (stack.storage_root / study_uid).rglob("*.dcm")}
    theirs = {
        dataset_bytes(httpx.get(f"{orthanc.base_url}/instances/{i['ID']}/file", timeout=10).content) for i in instances
    }
    assert theirs == ours


def test_orthanc_is_queried_and_a_study_moved_from_it_into_ours(
    stack: Stack, api: Api, orthanc: Orthanc, orthanc_node: dict[str, Any], tmp_path: Path
) -> None:
    study_uid, files = _study(tmp_path, patient_name="Only^InOrthanc", patient_id="E2E-ORTHANC-MOVE", count=4)
    for path in files:
        uploaded = httpx.post(f"{orthanc.base_url}/instances", content=path.read_bytes(), timeout=10)
        assert uploaded.status_code == 200, uploaded.text

    query = api("POST", f"/api/v1/nodes/{orthanc_node['id']}/query",
                json={"level": "STUDY", "filters": {"PatientName": "ONLY^INORTH*"}})  # fmt: skip
    assert query.status_code == 200, query.text
    matches = [m for m in query.json() if m.get("StudyInstanceUID") == study_uid]
    assert len(matches) == 1
    assert matches[0]["PatientID"] == "E2E-ORTHANC-MOVE"
    assert matches[0]["NumberOfStudyRelatedInstances"] == "4"
    series = api("POST", f"/api/v1/nodes/{orthanc_node['id']}/query",
                 json={"level": "SERIES", "filters": {"StudyInstanceUID": study_uid}})  # fmt: skip
    assert [s["NumberOfSeriesRelatedInstances"] for s in series.json()] == ["4"]
    assert api("GET", f"/api/v1/studies/{study_uid}").status_code == 404  # not ours yet

    retrieve = api("POST", f"/api/v1/nodes/{orthanc_node['id']}/retrieve", json={"study_uid": study_uid})
    assert retrieve.status_code == 202, retrieve.text
    transfer = api.transfer_settled(retrieve.json()["id"])
    assert (transfer["status"], transfer["completed"], transfer["failed"]) == ("done", 4, 0), transfer

    assert wait_for_instances(stack, study_uid, 4) == 4
    detail = api("GET", f"/api/v1/studies/{study_uid}").json()
    assert detail["number_of_instances"] == 4
    stored = {pydicom.dcmread(p).SOPInstanceUID for p in (stack.storage_root / study_uid).rglob("*.dcm")}
    assert stored == {pydicom.dcmread(p).SOPInstanceUID for p in files}


def test_a_routing_rule_forwards_what_arrives_to_orthanc(
    stack: Stack, api: Api, orthanc: Orthanc, orthanc_node: dict[str, Any], tmp_path: Path
) -> None:
    sender = "RULE_SENDER"  # only this test's C-STOREs match the rule
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        rule_id = conn.execute(
            "INSERT INTO pacs_forwardrule (name, node_id, modality, calling_ae, enabled)"
            " VALUES ('CT from RULE_SENDER', %s, 'CT', %s, true) RETURNING id",
            (orthanc_node["id"], sender),
        ).fetchone()[0]
        try:
            study_uid, files = _study(tmp_path, patient_name="Rule^Forward", patient_id="E2E-ORTHANC-RULE", count=2)
            ae = AE(ae_title=sender)
            ae.requested_contexts = StoragePresentationContexts
            assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
            assert assoc.is_established
            assert [assoc.send_c_store(path).Status for path in files] == [0, 0]
            assoc.release()

            deadline = time.monotonic() + TRANSFER_TIMEOUT_SECONDS
            forwarded = 0
            while forwarded < 2 and time.monotonic() < deadline:
                transfers = api("GET", "/api/v1/transfers", params={"kind": "forward", "study_uid": study_uid}).json()
                forwarded = sum(t["completed"] for t in transfers if t["status"] == "done")
                time.sleep(0.25)
            assert forwarded == 2, transfers
            assert {t["node_name"] for t in transfers} == {"orthanc"}
            study = _orthanc_study(orthanc, study_uid)
            assert study is not None
            instances = httpx.get(f"{orthanc.base_url}/studies/{study['ID']}/instances", timeout=10).json()
            assert len(instances) == 2
        finally:
            conn.execute("DELETE FROM pacs_forwardrule WHERE id = %s", (rule_id,))
