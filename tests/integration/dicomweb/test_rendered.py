"""WADO-RS rendered frames and thumbnails: decodable JPEG/PNG of the right size, the display pipeline's values."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.conftest import make_dataset
from tests.integration.dicomweb.conftest import Stored

StoreFn = Callable[..., Stored]


def _image(response: httpx.Response, media_type: str = "image/jpeg") -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def _png(http: httpx.Client, path: str, **params: str) -> np.ndarray:
    return np.asarray(_image(http.get(path, params=params, headers={"Accept": "image/png"}), "image/png"))


def _linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out independently of the app."""
    out = np.where(
        values <= center - 0.5 - (width - 1) / 2,
        0.0,
        np.where(values > center - 0.5 + (width - 1) / 2, 255.0, ((values - (center - 0.5)) / (width - 1) + 0.5) * 255),
    )
    return np.rint(out).astype(np.uint8)


def _hu(ds: Dataset) -> np.ndarray:
    stored = np.frombuffer(ds.PixelData, dtype=np.int16).reshape(ds.Rows, ds.Columns).astype(np.float64)
    return stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _path(stored: Stored, tail: str = "rendered") -> str:
    s, se, i = stored.uids
    return f"/studies/{s}/series/{se}/instances/{i}/{tail}"


def test_rendered_jpeg_through_dicomweb_client(client: DICOMwebClient, store: StoreFn) -> None:
    ct = store(rows=48, columns=80)
    image = Image.open(io.BytesIO(client.retrieve_instance_rendered(*ct.uids, media_types=("image/jpeg",))))
    assert (image.format, image.size, image.mode) == ("JPEG", (80, 48), "L")


def test_signed_pixels_rescale_and_windows(http: httpx.Client, store: StoreFn) -> None:
    ct = store()  # int16 stored values, intercept -1024, the file's window 40/400
    hu = _hu(ct.ds)
    assert np.array_equal(_png(http, _path(ct)), _linear(hu, 40, 400))  # the file's window
    assert np.array_equal(_png(http, _path(ct), window="-600,1500"), _linear(hu, -600, 1500))  # the asked one
    exact = _png(http, _path(ct), window="0,2000,linear-exact")
    assert np.array_equal(exact, np.rint(np.clip((hu + 1000) / 2000, 0, 1) * 255).astype(np.uint8))


def test_monochrome1_is_inverted(http: httpx.Client, store: StoreFn) -> None:
    normal = store()
    inverted = store(make_dataset(PhotometricInterpretation="MONOCHROME1"))
    assert np.array_equal(_png(http, _path(inverted)), 255 - _png(http, _path(normal)))


def test_without_a_window_the_range_is_stretched(http: httpx.Client, store: StoreFn) -> None:
    ds = make_dataset()
    del ds.WindowCenter
    del ds.WindowWidth
    pixels = _png(http, _path(store(ds)))
    assert (pixels.min(), pixels.max()) == (0, 255)


def test_rgb_is_shown_as_it_is(http: httpx.Client, store: StoreFn) -> None:
    ds = make_dataset(rows=16, columns=24)
    rgb = np.random.default_rng(7).integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for keyword in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    ds.PixelData = rgb.tobytes()
    assert np.array_equal(_png(http, _path(store(ds))), rgb)


def test_palette_colour_goes_through_its_lookup_tables(http: httpx.Client, store: StoreFn) -> None:
    ds = make_dataset(rows=8, columns=8)
    index = (np.arange(64, dtype=np.uint8) % 4).reshape(8, 8)
    ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
        "PALETTE COLOR", 8, 8, 7, 0,
    )  # fmt: skip
    for keyword in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    red, green, blue = [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255]
    for colour, table in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [4, 0, 8])
        setattr(ds, f"{colour}PaletteColorLookupTableData", bytes(table))
    ds.PixelData = index.tobytes()
    pixels = _png(http, _path(store(ds)))
    expected = np.stack([np.array(red)[index], np.array(green)[index], np.array(blue)[index]], axis=-1)
    assert np.array_equal(pixels, expected.astype(np.uint8))


def test_viewport_and_quality(http: httpx.Client, store: StoreFn) -> None:
    ct = store(rows=64, columns=128)
    assert _image(http.get(_path(ct), params={"viewport": "32,32"})).size == (32, 16)  # aspect kept
    cropped = _png(http, _path(ct), viewport="10,10,0,0,10,10")
    assert np.array_equal(cropped, _linear(_hu(ct.ds), 40, 400)[:10, :10])
    small = http.get(_path(ct), params={"quality": "5"})
    large = http.get(_path(ct), params={"quality": "100"})
    assert len(_image(small).tobytes()) == len(_image(large).tobytes())
    assert len(small.content) < len(large.content)


def test_frame_rendered_and_thumbnails(http: httpx.Client, store: StoreFn) -> None:
    ds = make_dataset(rows=300, columns=200)
    base = np.frombuffer(ds.PixelData, dtype=np.int16).reshape(300, 200)
    ds.NumberOfFrames = 2
    ds.PixelData = np.stack([base, base + 500]).astype(np.int16).tobytes()
    multi = store(ds)
    second = _png(http, _path(multi, "frames/2/rendered"))
    hu = np.stack([base, base + 500]).astype(np.float64) - 1024
    assert np.array_equal(second, _linear(hu[1], 40, 400))
    assert np.array_equal(_png(http, _path(multi)), _linear(hu[0], 40, 400))  # the instance: its first frame
    assert _image(http.get(_path(multi, "thumbnail"))).size == (85, 128)  # fits 128x128
    assert _image(http.get(_path(multi, "frames/2/thumbnail"))).size == (85, 128)

    study_uid, series_uid = generate_uid(), generate_uid()
    series = [store(study_uid=study_uid, series_uid=series_uid, instance_number=n, rows=32) for n in (1, 2, 3)]
    s, se = study_uid, series_uid
    middle = _png(http, f"/studies/{s}/series/{se}/thumbnail")
    assert np.array_equal(middle, _png(http, _path(series[1], "thumbnail")))
    assert np.array_equal(_png(http, f"/studies/{s}/thumbnail"), middle)


@pytest.mark.parametrize(
    ("tail", "params", "accept", "status"),
    [
        ("rendered", {"window": "40"}, "image/jpeg", 400),
        ("rendered", {"window": "40,0"}, "image/jpeg", 400),
        ("rendered", {"window": "40,400,cubic"}, "image/jpeg", 400),
        ("rendered", {"viewport": "0,10"}, "image/jpeg", 400),
        ("rendered", {"viewport": "10,10,0,0,0,5"}, "image/jpeg", 400),
        ("rendered", {"quality": "101"}, "image/jpeg", 400),
        ("frames/1,2/rendered", {}, "image/jpeg", 400),
        ("frames/3/rendered", {}, "image/jpeg", 400),
        ("rendered", {}, "image/gif", 406),
        ("rendered", {}, "application/dicom", 406),
        ("rendered", {}, "image/*", 200),
        ("rendered", {}, "*/*", 200),
    ],
)
def test_bad_render_requests(
    http: httpx.Client, store: StoreFn, tail: str, params: dict[str, str], accept: str, status: int
) -> None:
    response = http.get(_path(store(), tail), params=params, headers={"Accept": accept})
    assert response.status_code == status, response.text


def test_thumbnail_of_a_series_without_images_is_404(http: httpx.Client, store: StoreFn) -> None:
    ds = make_dataset()
    for keyword in ("PixelData", "Rows", "Columns"):
        delattr(ds, keyword)
    s, se, _ = store(ds).uids
    assert http.get(f"/studies/{s}/series/{se}/thumbnail").status_code == 404
    assert http.get(f"/studies/{s}/thumbnail").status_code == 404
