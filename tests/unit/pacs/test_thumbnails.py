"""Rendering pixels into a thumbnail: rescale, window, MONOCHROME1 inversion, colour, size."""

import numpy as np
from pydicom.dataset import Dataset

from noctis_pro.pacs.thumbnails import thumbnail_image


def gray_ds(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SamplesPerPixel = 1
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def ramp(rows: int = 64, columns: int = 64) -> np.ndarray:
    return np.tile(np.arange(columns, dtype=np.int16), (rows, 1))


def test_window_from_the_dataset_after_rescale() -> None:
    # stored 0..63, HU = stored*10 - 100 -> -100..530; window 0..200 HU
    ds = gray_ds(RescaleSlope=10, RescaleIntercept=-100, WindowCenter=100, WindowWidth=200)
    pixels = np.asarray(thumbnail_image(ds, ramp()))
    assert pixels[0, 0] == 0  # -100 HU, below the window
    assert pixels[0, 20] == 127  # 100 HU, the centre
    assert pixels[0, 63] == 255  # above the window


def test_monochrome1_is_inverted() -> None:
    normal = np.asarray(thumbnail_image(gray_ds(), ramp()))
    inverted = np.asarray(thumbnail_image(gray_ds(PhotometricInterpretation="MONOCHROME1"), ramp()))
    assert normal[0, 0] < normal[0, 63]
    assert inverted[0, 0] > inverted[0, 63]


def test_large_images_fit_in_256_keeping_aspect() -> None:
    image = thumbnail_image(gray_ds(), ramp(rows=512, columns=1024))
    assert image.size == (256, 128)


def test_rgb_stays_colour() -> None:
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    image = thumbnail_image(gray_ds(PhotometricInterpretation="RGB", SamplesPerPixel=3), rgb)
    assert image.mode == "RGB"
    assert np.asarray(image)[0, 0].tolist() == [200, 0, 0]


def test_palette_color_uses_its_lookup_tables() -> None:
    ds = gray_ds(PhotometricInterpretation="PALETTE COLOR", BitsAllocated=8, BitsStored=8, PixelRepresentation=0)
    ramp8 = np.arange(256, dtype=np.uint16) * 257  # 16-bit LUT entries
    for color, lut in (("Red", ramp8), ("Green", np.zeros(256, np.uint16)), ("Blue", ramp8[::-1].copy())):
        setattr(ds, f"{color}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{color}PaletteColorLookupTableData", lut.tobytes())
    indices = np.tile(np.array([0, 255], dtype=np.uint8), (8, 4))
    pixels = np.asarray(thumbnail_image(ds, indices))
    assert pixels.shape == (8, 8, 3)
    assert pixels[0, 0].tolist() == [0, 0, 255]
    assert pixels[0, 1].tolist() == [255, 0, 0]
