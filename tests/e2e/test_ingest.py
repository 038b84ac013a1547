"""The ingest path end to end: a modality's C-STORE on 11112 is durable, indexed, announced and visible."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pydicom
import pytest
import websockets
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

from tests.conftest import make_dataset, write_dataset
from tests.stack import Stack

pytestmark = pytest.mark.e2e
INDEX_TIMEOUT_SECONDS = 30


def storescu(stack: Stack, files: list[Path]) -> subprocess.CompletedProcess[str]:
    """Send like a modality: uncompressed files as they are; JPEG files with JPEG proposed (`-xy`), as a modality
    configured for lossy JPEG does (storescu proposes only uncompressed syntaxes otherwise)."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    argv = ["storescu", "-aec", stack.ae_title, "-aet", "MODALITY1", "127.0.0.1", str(stack.dicom_port)]
    plain = [
        f for f in files if pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID != JPEGBaseline8Bit
    ]
    jpeg = [f for f in files if f not in plain]
    result = subprocess.CompletedProcess(argv, 0, "", "")
    for extra, group in (([], plain), (["-xy"], jpeg)):
        if group:
            result = subprocess.run(
                [argv[0], *extra, *argv[1:], *map(str, group)],
                capture_output=True, text=True, env=env, timeout=600, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                return result
    return result


def dataset_part(path: Path) -> bytes:
    """The bytes after the Part-10 file meta group: what the modality sent, as it sent it."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    assert data[132:136] == b"\x02\x00\x00\x00", "file meta starts with (0002,0000) group length"
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]


def jpeg_dataset(**kwargs: object) -> pydicom.Dataset:
    """JPEG Baseline (lossy, 8 bit), encoded with Pillow and encapsulated: a compressed series as sent."""
    ds = make_dataset(modality="OT", **kwargs)  # type: ignore[arg-type]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    pixels = (np.add.outer(np.arange(64), np.arange(64)) * 2).astype(np.uint8)
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=90)
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for keyword in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def make_study(directory: Path, *, patient_id: str, per_series: int = 4) -> tuple[str, list[Path]]:
    study_uid = generate_uid()
    files: list[Path] = []
    builders: list[Callable[..., pydicom.Dataset]] = [
        lambda **kw: make_dataset(modality="CT", **kw),
        lambda **kw: make_dataset(modality="MR", **kw),
        jpeg_dataset,
    ]
    for number, build in enumerate(builders, start=1):
        series_uid = generate_uid()
        for index in range(1, per_series + 1):
            ds = build(study_uid=study_uid, series_uid=series_uid, patient_id=patient_id, instance_number=index)
            ds.SeriesNumber = number
            files.append(write_dataset(ds, directory / f"s{number}_{index:03d}.dcm"))
    return study_uid, files


def api(stack: Stack, token: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(stack.base_url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def wait_for_instances(stack: Stack, study_uid: str, expected: int) -> int:
    count = -1
    deadline = time.monotonic() + INDEX_TIMEOUT_SECONDS
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pacs_instance i JOIN pacs_series se ON se.id = i.series_id "
                "JOIN pacs_study st ON st.id = se.study_id WHERE st.study_instance_uid = %s",
                (study_uid,),
            ).fetchone()
            count = row[0] if row else 0
            if count >= expected:
                return count
            time.sleep(0.2)
    return count


def stored_path(stack: Stack, ds: pydicom.Dataset) -> Path:
    return stack.storage_root / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"


def test_storescu_study_is_stored_as_sent_indexed_announced_and_listed(
    stack: Stack, api_token: str, tmp_path: Path
) -> None:
    study_uid, files = make_study(tmp_path, patient_id="E2E-INGEST-1")

    async def send_and_listen() -> tuple[dict, float]:
        headers = {"Authorization": f"Bearer {api_token}"}
        async with websockets.connect(stack.ws_url, additional_headers=headers, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), timeout=5)  # hello
            result = await asyncio.to_thread(storescu, stack, files)
            assert result.returncode == 0, result.stderr
            sent_at = time.monotonic()
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout=INDEX_TIMEOUT_SECONDS))
                if (
                    event.get("type") == "study.updated"
                    and event.get("study_instance_uid") == study_uid
                    and event.get("number_of_instances") == len(files)
                ):
                    return event, time.monotonic() - sent_at

    event, latency = asyncio.run(send_and_listen())
    print(f"study.updated seen {latency * 1000:.0f} ms after storescu returned")
    assert event["number_of_series"] == 3

    for path in files:
        ds = pydicom.dcmread(path)
        stored = stored_path(stack, ds)
        assert stored.exists(), stored
        assert dataset_part(stored) == dataset_part(path), f"{stored} differs from what was sent"
        stored_meta = pydicom.dcmread(stored, stop_before_pixels=True).file_meta
        assert stored_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID

    listed = api(stack, api_token, "/api/v1/studies", patient_id="E2E-INGEST-1")
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert item["study_instance_uid"] == study_uid
    assert item["number_of_series"] == 3
    assert item["number_of_instances"] == len(files)
    assert {"CT", "MR", "OT"} <= set(item["modalities"])

    detail = api(stack, api_token, f"/api/v1/studies/{study_uid}").json()
    assert len(detail["series"]) == 3
    jpeg_series = next(s for s in detail["series"] if s["modality"] == "OT")
    instances = api(stack, api_token, f"/api/v1/series/{jpeg_series['series_instance_uid']}/instances").json()
    rows = instances["instances"]
    assert {row["transfer_syntax_uid"] for row in rows} == {JPEGBaseline8Bit}

    # Sent again: nothing duplicated.
    assert storescu(stack, files).returncode == 0
    time.sleep(1.0)
    again = api(stack, api_token, f"/api/v1/studies/{study_uid}").json()
    assert sum(s["number_of_instances"] for s in again["series"]) == len(files)
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT count(*) FROM pacs_receipt WHERE study_instance_uid = %s", (study_uid,)).fetchone()
    assert row == (len(files),)
    assert len(list((stack.storage_root / study_uid).rglob("*.dcm"))) == len(files)


def _store_one(stack: Stack, ds: pydicom.Dataset) -> int:
    ae = AE(ae_title="MODALITY2")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status) if status else -1
    finally:
        assoc.release()


def assert_refused_without_trace(stack: Stack, ds: pydicom.Dataset, status: int) -> None:
    """A failure status (out of resources / cannot understand), no file, no receipt; the SCP still stores."""
    assert status != 0
    assert (status & 0xF000) in (0xA000, 0xC000), hex(status)
    assert not list(stack.storage_root.rglob(f"{ds.SOPInstanceUID}.dcm"))
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT count(*) FROM pacs_receipt WHERE sop_instance_uid = %s", (ds.SOPInstanceUID,))
        assert row.fetchone() == (0,)
    assert _store_one(stack, make_dataset(patient_id=ds.PatientID)) == 0, "the SCP keeps serving after a failure"


@pytest.mark.parametrize(
    ("field", "value"),
    [("StudyInstanceUID", "../x"), ("StudyInstanceUID", "1." + "2" * 63), ("SeriesInstanceUID", "1.2.abc")],
)
def test_bad_uids_get_a_failure_status_and_leave_nothing(stack: Stack, field: str, value: str) -> None:
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    ds = make_dataset(patient_id="E2E-BAD")
    setattr(ds, field, value)
    assert_refused_without_trace(stack, ds, _store_one(stack, ds))


def test_django_stopped_during_a_500_instance_ingest_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [
        write_dataset(
            make_dataset(study_uid=study_uid, series_uid=series_uid, patient_id="E2E-DJANGO-DOWN", instance_number=i,
                         rows=32, columns=32),
            tmp_path / f"{i:04d}.dcm",
        )
        for i in range(1, 501)
    ]  # fmt: skip
    stack.signal_service("django", signal.SIGSTOP)
    try:
        result = storescu(stack, files)
        assert result.returncode == 0, result.stderr
    finally:
        stack.signal_service("django", signal.SIGCONT)
    resumed = time.monotonic()
    assert wait_for_instances(stack, study_uid, 500) == 500
    print(f"500 instances indexed {time.monotonic() - resumed:.1f}s after Django resumed")


def test_scp_killed_mid_ingest_keeps_every_acknowledged_instance(stack: Stack) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    acknowledged: list[pydicom.Dataset] = []
    stop = threading.Event()

    def modality() -> None:
        ae = AE(ae_title="MODALITY3")
        ae.requested_contexts = StoragePresentationContexts[:100]
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
        number = 0
        while not stop.is_set():
            assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
            if not assoc.is_established:
                time.sleep(0.2)
                continue
            while assoc.is_established and not stop.is_set():
                number += 1
                ds = make_dataset(study_uid=study_uid, series_uid=series_uid, patient_id="E2E-SCP-KILL",
                                  instance_number=number, rows=32, columns=32)  # fmt: skip
                try:
                    status = assoc.send_c_store(ds)
                except RuntimeError:  # the association died between the check and the send
                    break
                if status and status.Status == 0:
                    acknowledged.append(ds)
            if assoc.is_established:
                assoc.release()
            else:
                assoc.abort()

    sender = threading.Thread(target=modality, daemon=True)
    sender.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    stack.signal_service("rust_scp", signal.SIGKILL)
    killed_after = len(acknowledged)
    # The supervisor restarts it; the modality notices the dead association, reconnects and goes on.
    deadline = time.monotonic() + 45
    while len(acknowledged) < killed_after + 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    sender.join(timeout=30)
    assert killed_after >= 40
    assert len(acknowledged) > killed_after, "the restarted SCP accepts stores again"
    for ds in acknowledged:
        assert stored_path(stack, ds).exists(), ds.SOPInstanceUID
    assert wait_for_instances(stack, study_uid, len(acknowledged)) >= len(acknowledged)


def test_bytes_that_are_not_a_dataset_fail_and_leave_nothing(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A C-STORE whose data set is garbage (a broken modality) gets a failure status; the SCP keeps serving."""
    import pynetdicom.association

    ds = make_dataset(patient_id="E2E-GARBAGE")
    garbage = b"\xfe\xff\x00\xe0 this is not a DICOM data set \x00\x01" * 7
    monkeypatch.setattr(pynetdicom.association, "encode", lambda *args, **kwargs: garbage)
    status = _store_one(stack, ds)
    monkeypatch.undo()
    assert_refused_without_trace(stack, ds, status)


def test_a_c_store_on_a_query_retrieve_context_is_refused_and_leaves_nothing(stack: Stack) -> None:
    """Q/R models are accepted contexts (for C-FIND/MOVE/GET); a C-STORE of such a "SOP class" is not storage."""
    ds = make_dataset(patient_id="E2E-QR-STORE")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PatientRootQueryRetrieveInformationModelFind
    ae = AE(ae_title="MODALITY2")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status.Status == 0x0122
    assert not list(stack.storage_root.rglob(f"{ds.SOPInstanceUID}.dcm"))
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT count(*) FROM pacs_receipt WHERE sop_instance_uid = %s", (ds.SOPInstanceUID,))
        assert row.fetchone() == (0,)
