"""WADO-RS through dicomweb-client against a real uvicorn: files as stored, metadata, bulk data, frames, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pydicom
import pytest
import requests
from blake3 import blake3
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from fastapi_app.main import create_app
from fastapi_app.settings import Settings
from noctis_pro.core.models import AuditEvent
from tests.conftest import make_dataset
from tests.integration.dicomweb.conftest import Stored

StoreFn = Callable[..., Stored]
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


def _multiframe(frames: int = 3, **kwargs: Any) -> Dataset:
    ds = make_dataset(**kwargs)
    base = np.frombuffer(ds.PixelData, dtype=np.int16).reshape(ds.Rows, ds.Columns)
    ds.NumberOfFrames = frames
    ds.PixelData = np.stack([base + 100 * i for i in range(frames)]).astype(np.int16).tobytes()
    return ds


@pytest.fixture
def study(store: StoreFn) -> list[Stored]:
    """One study: a CT series of two single-frame instances, and a series with an RLE multi-frame instance."""
    study_uid, ct_series, mf_series = generate_uid(), generate_uid(), generate_uid()
    ct = [store(study_uid=study_uid, series_uid=ct_series, instance_number=n) for n in (1, 2)]
    rle = _multiframe(study_uid=study_uid, series_uid=mf_series, SeriesNumber=2)
    rle.compress(RLELossless)
    return [*ct, store(rle)]


def _parts(client: DICOMwebClient, url: str, accept: str | None = None) -> tuple[requests.Response, list[bytes]]:
    """The raw body parts, cut by dicomweb-client's own multipart decoder."""
    headers = dict(client._session.headers)
    if accept:
        headers["Accept"] = accept
    response = requests.get(url, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response, list(client._decode_multipart_message(response, stream=False))


def test_retrieve_study_series_and_instance_byte_identical(
    client: DICOMwebClient, study: list[Stored], server: str
) -> None:
    study_uid = study[0].ds.StudyInstanceUID
    datasets = client.retrieve_study(study_uid)
    assert [d.SOPInstanceUID for d in datasets] == [s.ds.SOPInstanceUID for s in study]
    assert datasets[2].file_meta.TransferSyntaxUID == RLELossless  # stored as received, not transcoded
    base = f"{server}/api/v1/dicomweb/studies/{study_uid}"
    response, parts = _parts(client, base)
    assert response.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    assert int(response.headers["content-length"]) == len(response.content)
    assert parts == [s.path.read_bytes() for s in study]

    ct = study[:2]
    series = client.retrieve_series(study_uid, ct[0].ds.SeriesInstanceUID)
    assert [d.SOPInstanceUID for d in series] == [s.ds.SOPInstanceUID for s in ct]
    _, parts = _parts(client, f"{base}/series/{ct[0].ds.SeriesInstanceUID}")
    assert parts == [s.path.read_bytes() for s in ct]

    one = study[2]
    instance = client.retrieve_instance(*one.uids)
    assert instance.SOPInstanceUID == one.ds.SOPInstanceUID
    assert np.array_equal(instance.pixel_array, pydicom.dcmread(one.path).pixel_array)
    _, parts = _parts(client, f"{base}/series/{one.ds.SeriesInstanceUID}/instances/{one.ds.SOPInstanceUID}")
    assert parts == [one.path.read_bytes()]


def test_retrieve_streams_a_study_larger_than_a_chunk(client: DICOMwebClient, store: StoreFn, server: str) -> None:
    big = store(rows=1024, columns=768)  # 1.5 MiB of pixels: more than one read chunk
    _, parts = _parts(client, f"{server}/api/v1/dicomweb/studies/{big.ds.StudyInstanceUID}")
    assert parts == [big.path.read_bytes()]


def _without_bulk(value: dict[str, Any]) -> dict[str, Any]:
    """A DICOM JSON object with bulk values reduced to their VR (their URIs differ by design)."""
    out = {}
    for tag, element in value.items():
        if "BulkDataURI" in element:
            out[tag] = {"vr": element["vr"], "bulk": True}
        elif element.get("vr") == "SQ" and "Value" in element:
            out[tag] = {"vr": "SQ", "Value": [_without_bulk(item) for item in element["Value"]]}
        else:
            out[tag] = element
    return out


def _expected_metadata(stored: Stored) -> dict[str, Any]:
    ds = pydicom.dcmread(stored.path)
    return _without_bulk(ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda _: "bulk"))


def test_metadata_at_each_level_equals_pydicom_json(client: DICOMwebClient, study: list[Stored]) -> None:
    study_uid = study[0].ds.StudyInstanceUID
    expected = [_expected_metadata(s) for s in study]
    assert [_without_bulk(m) for m in client.retrieve_study_metadata(study_uid)] == expected
    ct_series = study[0].ds.SeriesInstanceUID
    assert [_without_bulk(m) for m in client.retrieve_series_metadata(study_uid, ct_series)] == expected[:2]
    one = client.retrieve_instance_metadata(*study[2].uids)
    assert _without_bulk(one) == expected[2]
    assert one["7FE00010"]["vr"] == "OB"  # encapsulated pixel data
    assert study[0].ds.PatientName == one["00100010"]["Value"][0]["Alphabetic"]


def test_bulkdata_uri_gives_the_pixel_data(client: DICOMwebClient, study: list[Stored], server: str) -> None:
    native, rle = study[0], study[2]
    uri = client.retrieve_instance_metadata(*native.uids)["7FE00010"]["BulkDataURI"]
    assert uri.endswith(f"/instances/{native.ds.SOPInstanceUID}/bulkdata/7FE00010")
    on_server = server + urlsplit(uri).path  # see DICOMWEB_PATH in test_qido.py: the client drops the port
    assert client.retrieve_bulkdata(on_server) == [native.ds.PixelData]
    rle_uri = client.retrieve_instance_metadata(*rle.uids)["7FE00010"]["BulkDataURI"]
    decoded = pydicom.dcmread(rle.path).pixel_array
    assert client.retrieve_bulkdata(server + urlsplit(rle_uri).path) == [decoded.tobytes()]  # served uncompressed


def test_frames_equal_pydicom_pixel_data(client: DICOMwebClient, study: list[Stored]) -> None:
    single = study[0]
    assert client.retrieve_instance_frames(*single.uids, frame_numbers=[1]) == [
        pydicom.dcmread(single.path).pixel_array.tobytes()
    ]
    multi = study[2]
    pixels = pydicom.dcmread(multi.path).pixel_array
    assert pixels.shape == (3, 64, 64)
    frames = client.retrieve_instance_frames(*multi.uids, frame_numbers=[3, 1])
    assert frames == [pixels[2].tobytes(), pixels[0].tobytes()]


def test_multiframe_native_frames(client: DICOMwebClient, store: StoreFn) -> None:
    multi = store(_multiframe(frames=4))
    pixels = pydicom.dcmread(multi.path).pixel_array
    frames = client.retrieve_instance_frames(*multi.uids, frame_numbers=[1, 2, 3, 4])
    assert frames == [pixels[i].tobytes() for i in range(4)]


def test_frame_numbers_out_of_range_or_malformed_are_400(http: httpx.Client, study: list[Stored]) -> None:
    s, se, i = study[2].uids
    base = f"/studies/{s}/series/{se}/instances/{i}/frames"
    for frames, needle in (("4", "4"), ("0", "0"), ("1,x", "x"), ("", "")):
        response = http.get(f"{base}/{frames}")
        assert response.status_code in {400, 404}, (frames, response.text)
        if frames:
            assert response.status_code == 400
            assert needle in response.json()["detail"]


def test_instance_responses_carry_etag_and_revalidate(http: httpx.Client, study: list[Stored]) -> None:
    s, se, i = study[0].uids
    digest = "blake3:" + blake3(study[0].path.read_bytes()).hexdigest()
    for path in (
        f"/studies/{s}/series/{se}/instances/{i}",
        f"/studies/{s}/series/{se}/instances/{i}/metadata",
        f"/studies/{s}/series/{se}/instances/{i}/frames/1",
    ):
        first = http.get(path)
        assert first.status_code == 200, path
        assert first.headers["etag"] == f'"{digest}"'
        assert first.headers["cache-control"] == "private, no-cache"
        again = http.get(path, headers={"If-None-Match": f'"{digest}"'})
        assert again.status_code == 304
        assert again.content == b""
        assert http.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_unknown_resources_are_404(http: httpx.Client, study: list[Stored]) -> None:
    s, se, i = study[0].uids
    other = generate_uid()
    for path in (
        f"/studies/{other}",
        f"/studies/{other}/metadata",
        f"/studies/{s}/series/{other}",
        f"/studies/{s}/series/{study[2].ds.SeriesInstanceUID}/instances/{i}",  # an instance of another series
        f"/studies/{s}/series/{se}/instances/{other}/metadata",
        f"/studies/{s}/series/{se}/instances/{other}/frames/1",
        f"/studies/{s}/series/{se}/instances/{i}/bulkdata/00091001",
    ):
        response = http.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"]


def test_path_parameters_that_are_not_uids_are_400(http: httpx.Client, study: list[Stored]) -> None:
    s, se, i = study[0].uids
    for path, needle in (
        ("/studies/1.2.-3", "StudyInstanceUID"),
        (f"/studies/{s}/series/1.2.x", "SeriesInstanceUID"),
        (f"/studies/{s}/series/{se}/instances/{'1' * 65}/metadata", "SOPInstanceUID"),
        (f"/studies/{s}/series/{se}/instances/{i}/bulkdata/7FE0", "bulk data path"),
    ):
        response = http.get(path)
        assert response.status_code == 400, path
        assert needle in response.json()["detail"]


@pytest.mark.parametrize(
    ("where", "accept", "status"),
    [
        ("study", 'multipart/related; type="application/dicom"', 200),
        ("study", 'multipart/related; type="application/dicom"; transfer-syntax=*', 200),
        ("study", f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}', 200),
        ("study", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50', 406),
        ("study", "application/zip", 406),
        ("study", "application/dicom+json", 406),
        ("study", 'multipart/related; type="application/octet-stream"', 406),
        ("metadata", "application/dicom+json", 200),
        ("metadata", 'multipart/related; type="application/dicom+xml"', 406),
        ("frames", 'multipart/related; type="application/octet-stream"; transfer-syntax=*', 200),
        ("frames", 'multipart/related; type="image/jpeg"', 406),
        ("frames", 'multipart/related; type="image/jpeg", multipart/related; type="application/octet-stream"', 200),
    ],
)
def test_accept_negotiation(http: httpx.Client, store: StoreFn, where: str, accept: str, status: int) -> None:
    s, se, i = store().uids
    path = {
        "study": f"/studies/{s}",
        "metadata": f"/studies/{s}/series/{se}/metadata",
        "frames": f"/studies/{s}/series/{se}/instances/{i}/frames/1",
    }[where]
    response = http.get(path, headers={"Accept": accept})
    assert response.status_code == status, response.text


def test_a_missing_file_is_a_server_error_not_a_broken_stream(http: httpx.Client, store: StoreFn) -> None:
    gone = store()
    gone.path.unlink()
    response = http.get(f"/studies/{gone.ds.StudyInstanceUID}")
    assert response.status_code == 500
    assert gone.ds.SOPInstanceUID in response.json()["detail"]


def test_study_and_series_retrievals_are_audited(client: DICOMwebClient, study: list[Stored], radiologist: Any) -> None:
    s, se, _ = study[0].uids
    client.retrieve_study(s)
    client.retrieve_series_metadata(s, se)
    events = AuditEvent.objects.filter(user_id=radiologist.pk).exclude(action="token.create").order_by("id")
    assert [(e.action, e.object_id) for e in events] == [("study.retrieve", s), ("series.metadata", se)]
    assert events[1].detail == {"study_instance_uid": s}


def test_every_route_needs_authentication(
    anonymous: httpx.Client, study: list[Stored], dicomweb_settings: Settings
) -> None:
    s, se, i = study[0].uids
    values = {"study": s, "series": se, "instance": i, "frames": "1", "tag_path": "7FE00010"}
    paths = [  # every DICOMweb route the app has, as OpenAPI lists them
        path.removeprefix("/api/v1/dicomweb").format(**values)
        for path in create_app(dicomweb_settings).openapi()["paths"]
        if path.startswith("/api/v1/dicomweb/")
    ]
    assert len(paths) == 20
    for path in paths:
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    assert anonymous.get("/studies", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_frames_of_an_instance_without_pixels_are_404(http: httpx.Client, store: StoreFn) -> None:
    ds = make_dataset()
    del ds.PixelData
    s, se, i = store(ds).uids
    response = http.get(f"/studies/{s}/series/{se}/instances/{i}/frames/1")
    assert response.status_code == 404
    assert "no pixel data" in response.json()["detail"]


def test_frames_that_cannot_be_decoded_are_406_while_the_file_is_served(http: httpx.Client, store: StoreFn) -> None:
    ds = make_dataset(transfer_syntax=JPEGLSLossless)
    ds.PixelData = encapsulate([b"\xff\xd8 not really JPEG-LS \xff\xd9"])
    broken = store(ds)
    s, se, i = broken.uids
    response = http.get(f"/studies/{s}/series/{se}/instances/{i}/frames/1")
    assert response.status_code == 406
    assert "retrieve the instance as stored" in response.json()["detail"]
    assert http.get(f"/studies/{s}/series/{se}/instances/{i}").status_code == 200


RLE_FRAMES = 'multipart/related; type="image/dicom-rle"'
OCTET_FRAMES = 'multipart/related; type="application/octet-stream"'


def test_compressed_frames_as_stored_when_accept_names_their_type(client: DICOMwebClient, study: list[Stored]) -> None:
    rle = study[2]
    stored_frames = list(generate_frames(pydicom.dcmread(rle.path).PixelData, number_of_frames=3))
    frames = client.retrieve_instance_frames(*rle.uids, frame_numbers=[2, 3], media_types=(("image/dicom-rle", "*"),))
    assert frames == stored_frames[1:]
    decoded = pydicom.dcmread(rle.path).pixel_array
    assert client.retrieve_instance_frames(*rle.uids, frame_numbers=[2]) == [decoded[1].tobytes()]  # default: raw


def test_frame_representation_follows_the_clients_order(http: httpx.Client, study: list[Stored]) -> None:
    s, se, i = study[2].uids
    url = f"/studies/{s}/series/{se}/instances/{i}/frames/1"
    compressed = http.get(url, headers={"Accept": f"{RLE_FRAMES}, {OCTET_FRAMES};q=0.5"})
    assert compressed.headers["content-type"].startswith(f"{RLE_FRAMES}; transfer-syntax={RLELossless};")
    plain = http.get(url, headers={"Accept": f"{RLE_FRAMES};q=0.4, {OCTET_FRAMES}"})
    assert plain.headers["content-type"].startswith(f"{OCTET_FRAMES}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN};")
    assert compressed.headers["etag"] != plain.headers["etag"]  # two representations of one URL
    assert http.get(url, headers={"Accept": RLE_FRAMES, "If-None-Match": compressed.headers["etag"]}).status_code == 304
    assert http.get(url, headers={"Accept": RLE_FRAMES, "If-None-Match": plain.headers["etag"]}).status_code == 200
    for refused in ('multipart/related; type="image/jpeg"', f"{RLE_FRAMES}; transfer-syntax=1.2.840.10008.1.2.4.50"):
        response = http.get(url, headers={"Accept": refused})
        assert response.status_code == 406, refused
        assert "image/dicom-rle" in response.json()["detail"]


def test_bulkdata_byte_ranges(client: DICOMwebClient, http: httpx.Client, study: list[Stored], server: str) -> None:
    native = study[0]
    pixels = native.ds.PixelData
    s, se, i = native.uids
    path = f"/studies/{s}/series/{se}/instances/{i}/bulkdata/7FE00010"
    assert client.retrieve_bulkdata(server + "/api/v1/dicomweb" + path, byte_range=(100, 199)) == [pixels[100:200]]
    partial = http.get(path, headers={"Range": "bytes=-10"})
    assert partial.status_code == 206
    assert partial.headers["content-range"] == f"bytes {len(pixels) - 10}-{len(pixels) - 1}/{len(pixels)}"
    assert partial.content.split(b"\r\n\r\n", 1)[1].startswith(pixels[-10:] + b"\r\n--")
    whole = http.get(path, headers={"Range": "bytes=0-5,10-20"})  # several ranges: the whole value
    assert (whole.status_code, whole.headers["accept-ranges"]) == (200, "bytes")
    beyond = http.get(path, headers={"Range": f"bytes={len(pixels)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(pixels)}"


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, JPEGLSLossless])
def test_metadata_in_other_transfer_syntaxes_equals_pydicom_json(
    client: DICOMwebClient, store: StoreFn, syntax: str
) -> None:
    ds = make_dataset(transfer_syntax=syntax, PixelPaddingValue=-2000)
    if syntax == JPEGLSLossless:
        ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 4000 + b"\xff\xd9"])  # metadata never decodes it
    stored = store(ds)
    metadata = client.retrieve_instance_metadata(*stored.uids)
    assert _without_bulk(metadata) == _expected_metadata(stored)
    assert metadata["7FE00010"]["BulkDataURI"].endswith("/bulkdata/7FE00010")
