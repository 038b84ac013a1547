"""The WADO-RS metadata cache: built per series after indexing (noctis_pro/pacs/metadata.py), served by FastAPI with
one read per series, equal to what the files give, and not served once the series has changed."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydicom.uid import RLELossless, generate_uid

from fastapi_app.settings import Settings
from noctis_pro.core.events import redis_client
from noctis_pro.pacs import metadata
from noctis_pro.pacs.models import Series, SeriesMetadata
from tests.conftest import make_dataset
from tests.integration.api.conftest import serving
from tests.integration.dicomweb.conftest import Stored

StoreFn = Callable[..., Stored]


@pytest.fixture
def two_series(store: StoreFn) -> list[Stored]:
    """A study: three CT instances stored out of order (one with a bulk private value in a sequence), and an RLE
    series (compressed pixel data)."""
    study, ct = generate_uid(), generate_uid()
    stored = [store(study_uid=study, series_uid=ct, instance_number=n) for n in (3, 1)]
    nested = make_dataset(study_uid=study, series_uid=ct, instance_number=2)
    item = make_dataset()
    item.add_new(0x00091010, "OB", b"\x01" * 3000)
    nested.ReferencedImageSequence = [item]
    stored.append(store(nested))
    rle = make_dataset(study_uid=study, SeriesNumber=2)
    rle.compress(RLELossless, generate_instance_uid=False)
    stored.append(store(rle))
    return stored


def _get(http: httpx.Client, path: str) -> list[dict]:
    response = http.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    return json.loads(response.content)


def _build(*series_uids: str) -> None:
    for uid in series_uids:
        result = metadata.series_metadata_build(series_uid=uid)
        assert result is not None
        assert result.written


def test_cached_metadata_equals_the_files_and_is_read_instead_of_them(
    http: httpx.Client, two_series: list[Stored]
) -> None:
    study, ct, rle = two_series[0].ds.StudyInstanceUID, two_series[0].ds.SeriesInstanceUID, two_series[3].uids[1]
    from_files = _get(http, f"/studies/{study}/metadata")
    series_from_files = _get(http, f"/studies/{study}/series/{ct}/metadata")
    assert [m["00200013"]["Value"][0] for m in series_from_files] == [1, 2, 3]
    nested = series_from_files[1]["00081140"]["Value"][0]["00091010"]["BulkDataURI"]
    assert nested.startswith(http.base_url.join("/api/v1/dicomweb/studies/").__str__())
    assert nested.endswith("/bulkdata/00081140/0/00091010")

    _build(ct, rle)
    row = SeriesMetadata.objects.get(series__series_instance_uid=ct)
    assert row.instance_count == 3
    assert len(gzip.decompress(bytes(row.data))) > len(bytes(row.data))  # stored compressed
    for stored in two_series:
        stored.path.unlink()  # from now on only the cache can answer

    assert _get(http, f"/studies/{study}/metadata") == from_files
    assert _get(http, f"/studies/{study}/series/{ct}/metadata") == series_from_files


def test_a_changed_series_is_read_from_its_files_until_rebuilt(
    http: httpx.Client, store: StoreFn, two_series: list[Stored]
) -> None:
    study, ct = two_series[0].ds.StudyInstanceUID, two_series[0].ds.SeriesInstanceUID
    _build(ct)
    added = store(study_uid=study, series_uid=ct, instance_number=4)

    series = Series.objects.get(series_instance_uid=ct)
    assert not metadata.series_metadata_current(series=series)
    fresh = _get(http, f"/studies/{study}/series/{ct}/metadata")
    assert [m["00080018"]["Value"][0] for m in fresh][-1] == added.ds.SOPInstanceUID
    study_level = _get(http, f"/studies/{study}/metadata")  # one series stale, one never built

    _build(ct)
    assert metadata.series_metadata_current(series=Series.objects.get(series_instance_uid=ct))
    assert _get(http, f"/studies/{study}/metadata") == study_level  # CT from the cache, RLE from its file
    added.path.unlink()
    assert _get(http, f"/studies/{study}/series/{ct}/metadata") == fresh


def test_a_build_from_an_older_snapshot_does_not_replace_a_newer_one(two_series: list[Stored]) -> None:
    ct = two_series[0].ds.SeriesInstanceUID
    _build(ct)
    row = SeriesMetadata.objects.get(series__series_instance_uid=ct)
    newer = row.series_updated_at.replace(year=row.series_updated_at.year + 1)
    SeriesMetadata.objects.filter(pk=row.pk).update(series_updated_at=newer)
    result = metadata.series_metadata_build(series_uid=ct)
    assert result is not None
    assert not result.written
    assert SeriesMetadata.objects.get(pk=row.pk).series_updated_at == newer


def test_indexing_queues_one_build_and_the_task_waits_for_a_quiet_series(
    store: StoreFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = generate_uid()
    key = metadata.METADATA_PENDING_KEY.format(series)
    first = store(series_uid=series)
    assert redis_client().exists(key)  # queued after the commit, with its pending marker
    store(study_uid=first.ds.StudyInstanceUID, series_uid=series, instance_number=2)

    queued: list[str] = []
    monkeypatch.setattr(metadata, "series_metadata_queue", lambda task, uid: queued.append(uid))
    assert metadata.series_metadata(series) == 0  # the series changed a moment ago: wait
    assert queued == [series]
    assert not redis_client().exists(key)
    assert not SeriesMetadata.objects.exists()

    monkeypatch.setattr(metadata, "METADATA_QUIET_SECONDS", 0)
    assert metadata.series_metadata(series) == 2
    assert metadata.series_metadata_current(series=Series.objects.get(series_instance_uid=series))
    assert metadata.series_metadata(series) == 0  # current: nothing to do


def test_public_base_url_names_the_retrieve_and_bulk_data_urls(
    dicomweb_settings: Settings, auth_headers: dict[str, str], two_series: list[Stored], storage_root: Path
) -> None:
    study, ct = two_series[0].ds.StudyInstanceUID, two_series[0].ds.SeriesInstanceUID
    settings = dicomweb_settings.model_copy(update={"noctis_public_base_url": "https://pacs.example.org/"})
    settings = Settings.model_validate(settings.model_dump())  # the validator trims the slash
    root = "https://pacs.example.org/api/v1/dicomweb"
    with (
        serving(settings) as address,
        httpx.Client(base_url=f"http://{address}/api/v1/dicomweb", headers=auth_headers) as http,
    ):
        files = _get(http, f"/studies/{study}/series/{ct}/metadata")
        _build(ct)
        cached = _get(http, f"/studies/{study}/series/{ct}/metadata")
        found = _get(http, f"/studies?StudyInstanceUID={study}")
    assert files == cached
    assert (
        files[0]["7FE00010"]["BulkDataURI"]
        == f"{root}/studies/{study}/series/{ct}/instances/{files[0]['00080018']['Value'][0]}/bulkdata/7FE00010"
    )
    assert found[0]["00081190"]["Value"] == [f"{root}/studies/{study}"]


def test_a_public_base_url_that_is_not_http_stops_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi_app.settings import ConfigError, settings_load

    monkeypatch.setenv("NOCTIS_PUBLIC_BASE_URL", "pacs.example.org")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "x" * 50)
    with pytest.raises(ConfigError, match="NOCTIS_PUBLIC_BASE_URL"):
        settings_load()


def test_only_bulk_data_uris_get_the_base_not_text_that_looks_like_one() -> None:
    from noctis_pro.contracts.dicom_json import bulk_data_uris_absolute

    tricky = '"BulkDataURI":"/studies/1.2/series/3'
    item = {
        "00081030": {"vr": "LO", "Value": [tricky]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "/studies/1/series/2/instances/3/bulkdata/7FE00010"},
    }
    text = json.dumps(item, separators=(",", ":")).encode()
    out = json.loads(bulk_data_uris_absolute(text, base='https://pacs.example.org/a"b/api/v1/dicomweb'))
    assert out["00081030"]["Value"] == [tricky]
    assert out["7FE00010"]["BulkDataURI"] == (
        'https://pacs.example.org/a"b/api/v1/dicomweb/studies/1/series/2/instances/3/bulkdata/7FE00010'
    )


def test_metadata_is_gzip_encoded_for_clients_that_accept_it(http: httpx.Client, two_series: list[Stored]) -> None:
    study, ct = two_series[0].ds.StudyInstanceUID, two_series[0].ds.SeriesInstanceUID
    _build(ct)
    for path in (f"/studies/{study}/metadata", f"/studies/{study}/series/{ct}/metadata"):
        plain = http.get(path, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        zipped = http.get(path, headers={"Accept-Encoding": "gzip, deflate"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["vary"] == "Accept-Encoding"
        assert json.loads(zipped.content) == json.loads(plain.content)  # httpx decodes it
        assert zipped.num_bytes_downloaded < plain.num_bytes_downloaded / 2


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [(None, False), ("identity", False), ("gzip", True), ("br, gzip;q=0.5", True), ("gzip;q=0", False),
     ("*", True), ("*, gzip;q=0", False), ("deflate", False)],
)  # fmt: skip
def test_accept_encoding_is_read_as_rfc_9110_says(header: str | None, gzip_ok: bool) -> None:
    from fastapi_app.dicomweb.metadata_cache import gzip_accepted

    assert gzip_accepted(header) is gzip_ok
