"""WADO-RS rendered resources (PS3.18 9.5, 10.4.1.1.3): a frame as JPEG or PNG, and thumbnails.

Pixels go the display pipeline of PS3.3 C.11: stored values (pydicom decodes and sign-extends them) ->
Modality LUT (Rescale Slope/Intercept) -> VOI (the `window` parameter, else the file's first window or VOI LUT,
else the frame's range) -> MONOCHROME1 inverted. Palette colour goes through its LUTs, RGB and YBR (converted to
RGB by pydicom) are scaled to 8 bits. Then the `viewport` region and size, and the `quality` of a JPEG.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from fastapi_app.dicomweb.media import NotAcceptableError, UnknownResourceError, accept_parse
from fastapi_app.errors import InvalidRequestError

JPEG, PNG = "image/jpeg", "image/png"
THUMBNAIL_SIZE = 128
MAX_VIEWPORT = 4096
DEFAULT_QUALITY = 90
_WINDOW_FUNCTIONS = frozenset({"linear", "linear-exact", "sigmoid"})


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "linear"


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int
    region: tuple[int, int, int, int] | None = None  # sx, sy, sw, sh in source pixels


@dataclass(frozen=True)
class RenderRequest:
    media_type: str
    window: Window | None = None
    viewport: Viewport | None = None
    quality: int = DEFAULT_QUALITY


def media_type_choose(accept: str | None) -> str:
    """JPEG unless PNG is preferred; anything but images is 406 (no GIF, MP4 or PDF here)."""
    for media_range in accept_parse(accept):
        if media_range.type in {JPEG, PNG}:
            return media_range.type
        if media_range.covers(JPEG):
            return JPEG
    raise NotAcceptableError(f"cannot answer {accept!r}: rendered resources are {JPEG} or {PNG}")


def _numbers(name: str, text: str, count: tuple[int, ...]) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in count:
        raise InvalidRequestError(f"{name} {text[:60]!r} needs {' or '.join(map(str, count))} comma-separated values")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InvalidRequestError(f"{name} {text[:60]!r} is not numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise InvalidRequestError(f"{name} {text[:60]!r} is not finite numbers")
    return values


def render_request_parse(
    *, accept: str | None, window: str | None, viewport: str | None, quality: str | None, thumbnail: bool = False
) -> RenderRequest:
    media_type = media_type_choose(accept)
    parsed_window = None
    if window:
        pieces = window.split(",")
        function = pieces[2].strip().lower() if len(pieces) == 3 else "linear"
        if function not in _WINDOW_FUNCTIONS:
            raise InvalidRequestError(f"window function {function[:20]!r} is not linear, linear-exact or sigmoid")
        center, width = _numbers("window", ",".join(pieces[:2]), (2,))
        if width <= 0 or (function == "linear" and width < 1):
            raise InvalidRequestError(f"window width {width} is too small")
        parsed_window = Window(center, width, function)
    parsed_viewport = Viewport(THUMBNAIL_SIZE, THUMBNAIL_SIZE) if thumbnail else None
    if viewport:
        values = _numbers("viewport", viewport, (2, 6))
        if not all(v == int(v) for v in values):
            raise InvalidRequestError(f"viewport {viewport[:60]!r} is not whole numbers")
        vw, vh, *region = (int(v) for v in values)
        if not (1 <= vw <= MAX_VIEWPORT and 1 <= vh <= MAX_VIEWPORT):
            raise InvalidRequestError(f"viewport size {vw}x{vh} is outside 1..{MAX_VIEWPORT}")
        if region and (region[0] < 0 or region[1] < 0 or region[2] < 1 or region[3] < 1):
            raise InvalidRequestError(f"viewport region {region} needs sx, sy >= 0 and sw, sh >= 1")
        parsed_viewport = Viewport(vw, vh, (region[0], region[1], region[2], region[3]) if region else None)
    parsed_quality = DEFAULT_QUALITY
    if quality:
        if not quality.isdigit() or not 1 <= int(quality) <= 100:
            raise InvalidRequestError(f"quality {quality[:20]!r} is not 1..100")
        parsed_quality = int(quality)
    return RenderRequest(media_type, parsed_window, parsed_viewport, parsed_quality)


def _windowed(values: np.ndarray, window: Window) -> np.ndarray:
    """PS3.3 C.11.2.1.2: the VOI functions onto 0..255."""
    c, w = window.center, window.width
    x = values.astype(np.float64)
    if window.function == "sigmoid":
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "linear-exact":
        return np.clip((x - (c - w / 2)) / w, 0.0, 1.0) * 255.0
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0) * 255.0


def _monochrome(ds: pydicom.Dataset, stored: np.ndarray, window: Window | None) -> np.ndarray:
    values = apply_modality_lut(stored, ds)
    if window is not None:
        out = _windowed(values, window)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center = ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter
        width = ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth
        function = str(ds.get("VOILUTFunction", "LINEAR")).lower().replace("_", "-")
        out = _windowed(values, Window(float(center), max(float(width), 1.0), function))
    elif "VOILUTSequence" in ds:
        voi = apply_voi_lut(values, ds, index=0).astype(np.float64)
        low, high = float(voi.min()), float(voi.max())
        out = (voi - low) / (high - low or 1.0) * 255.0
    else:
        low, high = float(values.min()), float(values.max())
        out = (values - low) / (high - low or 1.0) * 255.0
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255.0 - out
    return np.rint(out).astype(np.uint8)


def _colour(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray:
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return (rgb >> 8).astype(np.uint8) if bits > 8 else rgb.astype(np.uint8)
    bits = int(ds.get("BitsStored", 8))
    return (stored >> (bits - 8)).astype(np.uint8) if bits > 8 else stored.astype(np.uint8)


def frame_render(path: Path, *, frame: int, number_of_frames: int, request: RenderRequest) -> bytes:
    """Frame `frame` (1-based) of the file as an encoded image."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if "Rows" not in ds or "PhotometricInterpretation" not in ds:
        raise UnknownResourceError(f"instance {path.stem} has no image to render")
    try:
        stored = pixel_array(str(path), index=frame - 1 if number_of_frames > 1 else None)
    except AttributeError:
        raise UnknownResourceError(f"instance {path.stem} has no pixel data") from None
    except (RuntimeError, NotImplementedError, ValueError):
        raise NotAcceptableError(f"instance {path.stem} cannot be decoded here; retrieve it as stored") from None
    photometric = str(ds.PhotometricInterpretation)
    pixels = _monochrome(ds, stored, request.window) if photometric.startswith("MONOCHROME") else _colour(ds, stored)
    image = Image.fromarray(pixels)
    if request.viewport is not None:
        image = _fit(image, request.viewport)
    out = io.BytesIO()
    if request.media_type == PNG:
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=request.quality)
    return out.getvalue()


def _fit(image: Image.Image, viewport: Viewport) -> Image.Image:
    """The region (default the whole frame) scaled to fit the viewport, keeping its aspect ratio."""
    if viewport.region is not None:
        sx, sy, sw, sh = viewport.region
        image = image.crop((sx, sy, sx + sw, sy + sh))
    scale = min(viewport.width / image.width, viewport.height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image
