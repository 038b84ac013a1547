"""STOW-RS through the real SCP: what dicomweb-client stores is archived by the C-STORE path (same checks, file
layout, receipt and indexing), found by QIDO like a modality's images, and bad parts fail alone with the
C-STORE status as their FailureReason."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, RLELossless, generate_uid
from pynetdicom import AE

from noctis_pro.contracts.storage import instance_relpath
from noctis_pro.pacs.models import Receipt
from tests.conftest import make_dataset
from tests.integration.dicomweb.conftest import MODALITY_AE_TITLE, Scp, receipts_index_pending

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"
INSTANCE_UID = "00081155"


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dataset_bytes(data: bytes) -> bytes:
    """What follows the file meta group: the data set as the client encoded it."""
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]


def meta_names_another_instance(data: bytes) -> bytes:
    """The file meta's MediaStorageSOPInstanceUID (the C-STORE's Affected SOP Instance UID) made to differ from
    the data set's SOPInstanceUID: the SCP answers A900 (pydicom's writer would correct it, so patch the bytes)."""
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    uid = pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID.encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")
    return data[:meta_end].replace(uid, other) + data[meta_end:]


def multipart(parts: list[bytes], boundary: str = "stowtestboundary") -> tuple[bytes, str]:
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts
    )
    return (
        body + b"--" + boundary.encode() + b"--\r\n",
        f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


def failures(body: dict) -> dict[str, int]:
    return {
        item[INSTANCE_UID].get("Value", [""])[0]: item[FAILURE_REASON]["Value"][0]
        for item in body.get(FAILED_SOP_SEQUENCE, {}).get("Value", [])
    }


def test_stow_stores_through_the_scp_as_sent_and_qido_finds_it(
    stow_client: DICOMwebClient, storage_root: Path, stow_server: str
) -> None:
    study = generate_uid()
    plain = make_dataset(study_uid=study, instance_number=1)
    implicit = make_dataset(study_uid=study, series_uid=plain.SeriesInstanceUID, instance_number=2)
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    rle = make_dataset(study_uid=study, modality="MR", instance_number=1)
    rle.compress(RLELossless, generate_instance_uid=False)
    sent = {ds.SOPInstanceUID: part10(ds) for ds in (plain, implicit, rle)}

    response = stow_client.store_instances([plain, implicit, rle])

    referenced = response.ReferencedSOPSequence
    assert {item.ReferencedSOPInstanceUID for item in referenced} == set(sent)
    assert "FailedSOPSequence" not in response
    # (requests, under dicomweb-client, sends Host without the port: NOCTIS_PUBLIC_BASE_URL is the cure.)
    assert response.RetrieveURL.endswith(f"/api/v1/dicomweb/studies/{study}")
    for ds in (plain, implicit, rle):
        path = storage_root / instance_relpath(
            study_uid=study, series_uid=ds.SeriesInstanceUID, sop_instance_uid=ds.SOPInstanceUID
        )
        stored = path.read_bytes()
        # Stored by the SCP in the syntax it was sent in, data set bytes untouched (never transcoded).
        assert dataset_bytes(stored) == dataset_bytes(sent[ds.SOPInstanceUID])
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    receipts = Receipt.objects.filter(sop_instance_uid__in=sent)
    assert {r.calling_ae for r in receipts} == {"NOCTIS_STOW"}  # admitted although the allow-list names MODALITY1

    assert sorted(receipts_index_pending()) == sorted(sent)
    found = stow_client.search_for_instances(study_instance_uid=study)
    assert {item["00080018"]["Value"][0] for item in found} == set(sent)
    retrieved = stow_client.retrieve_instance(study, rle.SeriesInstanceUID, rle.SOPInstanceUID)
    assert retrieved.file_meta.TransferSyntaxUID == RLELossless


def test_stow_and_c_store_data_are_found_alike(stow_client: DICOMwebClient, scp: Scp) -> None:
    study = generate_uid()
    by_modality = make_dataset(study_uid=study, instance_number=1)
    by_stow = make_dataset(study_uid=study, series_uid=by_modality.SeriesInstanceUID, instance_number=2)
    ae = AE(ae_title=MODALITY_AE_TITLE)
    ae.add_requested_context(by_modality.SOPClassUID, by_modality.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    assert assoc.send_c_store(by_modality).Status == 0x0000
    assoc.release()
    stow_client.store_instances([by_stow])
    receipts_index_pending()

    found = {item["00080018"]["Value"][0]: item for item in stow_client.search_for_instances(study_instance_uid=study)}
    assert set(found) == {by_modality.SOPInstanceUID, by_stow.SOPInstanceUID}
    modality_item, stow_item = found[by_modality.SOPInstanceUID], found[by_stow.SOPInstanceUID]
    assert set(modality_item) == set(stow_item)
    differ = {"00080018", "00200013", "00081190"}  # SOP Instance UID, InstanceNumber, RetrieveURL
    assert {"0020000E", "00080016", "00280010"} <= set(modality_item)
    for tag in set(modality_item) - differ:
        assert modality_item[tag] == stow_item[tag], tag
    series = stow_client.search_for_series(study_instance_uid=study)
    assert series[0]["00201209"]["Value"] == [2]  # NumberOfSeriesRelatedInstances: one series, both arrivals


def test_bad_parts_fail_alone_with_their_c_store_status(stow_http: httpx.Client, storage_root: Path) -> None:
    study = generate_uid()
    good = make_dataset(study_uid=study)
    other_study = make_dataset()
    mismatch = make_dataset(study_uid=study)
    bad_uid = make_dataset(study_uid=study, series_uid="1.2.3..4")  # not a UID: the SCP cannot understand it
    not_dicom = b"this is not a DICOM file"
    parts = [part10(good), part10(other_study), meta_names_another_instance(part10(mismatch)), part10(bad_uid)]
    body, content_type = multipart([*parts, not_dicom])

    response = stow_http.post(f"/studies/{study}", content=body, headers={"Content-Type": content_type})

    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    answer = response.json()
    referenced = answer[REFERENCED_SOP_SEQUENCE]["Value"]
    assert [item[INSTANCE_UID]["Value"][0] for item in referenced] == [good.SOPInstanceUID]
    assert referenced[0]["00081190"]["Value"][0].endswith(
        f"/studies/{study}/series/{good.SeriesInstanceUID}/instances/{good.SOPInstanceUID}"
    )
    failed = failures(answer)
    assert failed[other_study.SOPInstanceUID] == 0xA900  # another study than the URL's
    assert failed[bad_uid.SOPInstanceUID] & 0xF000 == 0xC000
    assert failed[""] == 0xC000  # the part that is no DICOM file has no UIDs to name
    assert failed[mismatch.SOPInstanceUID] & 0xFF00 == 0xA900
    # Only the good instance is in storage and has a receipt; nothing half-written.
    assert list(Receipt.objects.values_list("sop_instance_uid", flat=True)) == [good.SOPInstanceUID]
    stored = [p for p in storage_root.rglob("*.dcm") if ".incoming" not in p.parts]
    assert [p.stem for p in stored] == [good.SOPInstanceUID]


def test_nothing_stored_is_409_and_an_unknown_sop_class_is_0122(stow_http: httpx.Client) -> None:
    ds = make_dataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.10.1001.999"  # no storage class
    body, content_type = multipart([part10(ds)])
    response = stow_http.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 409
    assert failures(response.json()) == {ds.SOPInstanceUID: 0x0122}
    assert REFERENCED_SOP_SEQUENCE not in response.json()
    from noctis_pro.core.models import AuditEvent

    event = AuditEvent.objects.get(action="study.store_failed")
    assert event.detail == {"failed": 1, "reasons": ["0122"]}


def test_a_single_application_dicom_body_is_stored(stow_http: httpx.Client, stow_temp_dir: Path) -> None:
    ds = make_dataset()
    response = stow_http.post("/studies", content=part10(ds), headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200, response.text
    assert response.json()[REFERENCED_SOP_SEQUENCE]["Value"][0][INSTANCE_UID]["Value"] == [ds.SOPInstanceUID]
    assert _no_parts_left(stow_temp_dir)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", 'multipart/related; type="application/dicom+json"; boundary=x', ""],
)
def test_other_media_types_are_415(stow_http: httpx.Client, content_type: str) -> None:
    response = stow_http.post("/studies", content=b"{}", headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert "application/dicom" in response.json()["detail"]


def _no_parts_left(directory: Path) -> bool:
    deadline = time.monotonic() + 10  # removed off the answer's path
    while any(directory.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(directory.iterdir())


def test_unparseable_bodies_are_400(stow_http: httpx.Client, stow_temp_dir: Path) -> None:
    body, content_type = multipart([part10(make_dataset())])
    truncated = body[: len(body) // 2]
    response = stow_http.post("/studies", content=truncated, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert "closing boundary" in response.json()["detail"]
    empty = stow_http.post(
        "/studies",
        content=b"--b--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert empty.status_code == 400
    assert Receipt.objects.count() == 0
    assert _no_parts_left(stow_temp_dir)  # also the part the truncated body had begun


def test_stow_is_audited(stow_http: httpx.Client) -> None:
    from noctis_pro.core.models import AuditEvent

    ds = make_dataset()
    body, content_type = multipart([part10(ds)])
    assert stow_http.post("/studies", content=body, headers={"Content-Type": content_type}).status_code == 200
    event = AuditEvent.objects.get(action="study.store")
    assert (event.object_id, event.username, event.detail) == (ds.StudyInstanceUID, "tech.smith", {"instances": 1})


def test_an_unreachable_scp_is_503_and_nothing_stored(
    dicomweb_settings, technologist_token: str, storage_root: Path
) -> None:
    from tests.conftest import free_port
    from tests.integration.api.conftest import serving

    settings = dicomweb_settings.model_copy(update={"dicom_port": free_port()})
    body, content_type = multipart([part10(make_dataset())])
    with serving(settings) as address:
        response = httpx.post(
            f"http://{address}/api/v1/dicomweb/studies",
            content=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {technologist_token}"},
            timeout=60,
        )
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert not list(storage_root.rglob("*.dcm"))


def test_stow_needs_a_login(stow_server: str) -> None:
    body, content_type = multipart([part10(make_dataset())])
    for path in ("/studies", f"/studies/{generate_uid()}"):
        response = httpx.post(
            stow_server + "/api/v1/dicomweb" + path, content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 401, path
    assert Receipt.objects.count() == 0


def test_stow_target_study_must_be_a_uid(stow_http: httpx.Client) -> None:
    body, content_type = multipart([part10(make_dataset())])
    response = stow_http.post(f"/studies/{uuid.uuid4()}", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert "StudyInstanceUID" in response.json()["detail"]


def test_a_chunked_upload_of_large_instances_is_stored_whole(stow_http: httpx.Client, storage_root: Path) -> None:
    """Sent with chunked transfer encoding in odd-sized pieces, so boundaries fall across the server's reads."""
    study = generate_uid()
    big = [make_dataset(study_uid=study, instance_number=n, rows=1024, columns=1024) for n in (1, 2)]
    body, content_type = multipart([part10(ds) for ds in big])

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 65_537):
            yield body[start : start + 65_537]

    response = stow_http.post("/studies", content=pieces(), headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    for ds in big:
        path = storage_root / instance_relpath(
            study_uid=study, series_uid=ds.SeriesInstanceUID, sop_instance_uid=ds.SOPInstanceUID
        )
        assert dataset_bytes(path.read_bytes()) == dataset_bytes(part10(ds))
