"""The viewer in a real browser (Debian's Chromium driven by Playwright) against the real stack.

One study is sent with dcmtk's storescu: a CT stack of 20 slices with a known pixel spacing (patient name an HTML
payload) and small series in each compressed transfer syntax the viewer must decode in the browser. The tests
read the canvas pixels and the viewer's state (window.noctisViewer); screenshots go to var/screenshots/.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from playwright.sync_api import Browser, Page, expect
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from tests.browser.test_worklist import CHROMIUM, XSS_NAME, browser, login  # noqa: F401  (browser is a fixture)
from tests.conftest import make_dataset, write_dataset
from tests.stack import Stack

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CT_SLICES = 20
CT_SIZE = 256
PIXEL_SPACING = 0.5  # mm: the image is 128 mm wide
MULTIFRAME_FRAMES = 8
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"


@dataclass
class ViewerStudy:
    study_uid: str
    ct_series_uid: str
    compressed: dict[str, str]  # transfer syntax UID -> series UID
    multiframe_series_uid: str


def _storescu(stack: Stack, files: list[Path], *flags: str) -> None:
    sent = subprocess.run(
        ["storescu", *flags, "-aec", stack.ae_title, "127.0.0.1", str(stack.dicom_port), *map(str, files)],
        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr


def _dcmtk(tool: str, *args: str) -> None:
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, f"{tool}: {done.stderr}"


def _ct_slice(study_uid: str, series_uid: str, number: int, **attrs: Any) -> pydicom.Dataset:
    ds = make_dataset(
        study_uid=study_uid, series_uid=series_uid, instance_number=number, rows=CT_SIZE, columns=CT_SIZE,
        patient_name=XSS_NAME, patient_id="VIEWER-1", **attrs,
    )  # fmt: skip
    ds.PixelSpacing = [PIXEL_SPACING, PIXEL_SPACING]
    ds.SliceLocation = float(number)
    # A body of soft tissue (40 HU) with a bone ring (700 HU) and air (-1000 HU) outside: W/L presets differ.
    yy, xx = np.mgrid[0:CT_SIZE, 0:CT_SIZE]
    r2 = (yy - CT_SIZE / 2) ** 2 + (xx - CT_SIZE / 2) ** 2
    hu = np.where(r2 < (CT_SIZE * 0.42) ** 2, 40 + (xx % 32) * 3, -1000)
    hu = np.where((r2 > (CT_SIZE * 0.30) ** 2) & (r2 < (CT_SIZE * 0.34) ** 2), 700, hu)
    hu[number * 4 : number * 4 + 6, :] = 300  # a band that moves with the slice: each slice looks different
    ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
    return ds


@pytest.fixture(scope="module")
def viewer_study(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> ViewerStudy:
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    work = tmp_path_factory.mktemp("viewer-study")
    study_uid, ct_series = generate_uid(), generate_uid()
    ct = [
        write_dataset(_ct_slice(study_uid, ct_series, n, SeriesNumber=1, SeriesDescription="Axial"), work / f"{n}.dcm")
        for n in range(1, CT_SLICES + 1)
    ]
    _storescu(stack, ct)

    compressed: dict[str, str] = {}

    def series(number: int, description: str, **attrs: Any) -> tuple[str, list[pydicom.Dataset]]:
        uid = generate_uid()
        made = [
            _ct_slice(study_uid, uid, n, SeriesNumber=number, SeriesDescription=description, **attrs) for n in (1, 2)
        ]
        return uid, made

    # JPEG baseline (8 bit): dcmcjpeg wants 8-bit input, so these are 8-bit unsigned slices.
    uid, made = series(2, "JPEG baseline")
    files = []
    for i, ds in enumerate(made):
        pixels = np.frombuffer(ds.PixelData, dtype=np.int16).reshape(CT_SIZE, CT_SIZE)
        ds.PixelData = np.clip((pixels.astype(np.int32) - 900) // 4, 0, 255).astype(np.uint8).tobytes()
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 0, 128, 256
        raw = write_dataset(ds, work / f"jpeg-raw{i}.dcm")
        _dcmtk("dcmcjpeg", "+eb", str(raw), str(work / f"jpeg{i}.dcm"))
        files.append(work / f"jpeg{i}.dcm")
    _storescu(stack, files, "-xy")
    compressed[JPEG_BASELINE] = uid

    uid, made = series(3, "JPEG lossless")
    files = []
    for i, ds in enumerate(made):
        raw = write_dataset(ds, work / f"jll-raw{i}.dcm")
        _dcmtk("dcmcjpeg", "+e1", str(raw), str(work / f"jll{i}.dcm"))
        files.append(work / f"jll{i}.dcm")
    _storescu(stack, files, "-xs")
    compressed[JPEG_LOSSLESS_SV1] = uid

    uid, made = series(4, "JPEG-LS lossless")
    files = []
    for i, ds in enumerate(made):
        raw = write_dataset(ds, work / f"jls-raw{i}.dcm")
        _dcmtk("dcmcjpls", "+el", str(raw), str(work / f"jls{i}.dcm"))
        files.append(work / f"jls{i}.dcm")
    _storescu(stack, files, "-xt")
    compressed[JPEG_LS_LOSSLESS] = uid

    for number, syntax, flag in ((5, JPEG2000Lossless, "-xv"), (6, RLELossless, "-xr")):
        uid, made = series(number, syntax.name)
        files = []
        for i, ds in enumerate(made):
            ds.compress(syntax)
            files.append(write_dataset(ds, work / f"{number}-{i}.dcm"))
        _storescu(stack, files, flag)
        compressed[str(syntax)] = uid

    # One multi-frame image (8 frames, the disc moving right frame by frame): a cine loop.
    multiframe = generate_uid()
    ds = make_dataset(
        study_uid=study_uid, series_uid=multiframe, patient_name=XSS_NAME, patient_id="VIEWER-1", rows=64,
        columns=64, SeriesNumber=7, SeriesDescription="Multi-frame", NumberOfFrames=MULTIFRAME_FRAMES,
        FrameTime=100.0,
    )  # fmt: skip
    yy, xx = np.mgrid[0:64, 0:64]
    frames = [((yy - 32) ** 2 + (xx - 8 - 6 * f) ** 2 < 64) * 1000 for f in range(MULTIFRAME_FRAMES)]
    ds.PixelData = np.stack(frames).astype(np.int16).tobytes()
    _storescu(stack, [write_dataset(ds, work / "multiframe.dcm")])
    return ViewerStudy(study_uid, ct_series, compressed, multiframe)


@pytest.fixture(scope="module")
def viewer_page(stack: Stack, browser: Browser, viewer_study: ViewerStudy) -> Iterator[Page]:  # noqa: F811
    """Logged in, the study opened from the worklist's 'Open in viewer' link, the first image drawn."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    page.frame_responses = []  # type: ignore[attr-defined]
    page.on(
        "response",
        lambda r: (
            page.frame_responses.append((r.url, r.status, r.headers.get("content-type", "")))  # type: ignore[attr-defined]
            if "/frames/" in r.url
            else None
        ),
    )
    login(page, stack)
    _wait_indexed(page, stack, viewer_study)
    page.goto(stack.base_url + "/")
    page.click(f'tr[data-study-uid="{viewer_study.study_uid}"] a.open-viewer')
    page.wait_for_url(f"**/studies/{viewer_study.study_uid}/view")
    page.wait_for_function(
        "window.noctisViewer && (window.noctisViewer.ready || window.noctisViewer.error)", timeout=30_000
    )
    assert page.evaluate("window.noctisViewer.error") is None
    yield page
    page.close()


def _wait_indexed(page: Page, stack: Stack, study: ViewerStudy) -> None:
    """All seven series indexed (the webhook is asynchronous to the C-STORE responses)."""
    url = f"{stack.base_url}/api/v1/dicomweb/studies/{study.study_uid}/series"
    for _ in range(120):
        response = page.request.get(url, headers={"Accept": "application/dicom+json"})
        if response.ok and len(response.json()) == 7:
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"the study was not indexed: {url}")


CANVAS_STATS = """() => {
  const canvas = document.querySelector('.cell.active canvas');
  const ctx = canvas.getContext('2d');
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  let lit = 0, sum = 0, hash = 0;
  for (let i = 0; i < data.length; i += 4) {
    const v = data[i] + data[i + 1] + data[i + 2];
    if (v > 30) lit += 1;
    sum += v;
    hash = (hash * 31 + v) % 1000000007;
  }
  return { lit: lit / (data.length / 4), mean: sum / (data.length / 4) / 3, hash };
}"""


def _state(page: Page) -> dict[str, Any]:
    return page.evaluate("window.noctisViewer.state()")


def _screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"viewer-{name}.png"))


def test_viewer_draws_the_ct_and_a_preset_changes_the_pixels(viewer_page: Page, viewer_study: ViewerStudy) -> None:
    page = viewer_page
    state = _state(page)
    assert state["seriesUid"] == viewer_study.ct_series_uid
    assert state["sliceCount"] == CT_SLICES
    before = page.evaluate(CANVAS_STATS)
    assert before["lit"] > 0.2, f"the canvas is (nearly) blank: {before}"
    _screenshot(page, "ct")

    page.click("button[data-preset=bone]")
    page.wait_for_function("Math.round(window.noctisViewer.state().windowWidth) === 1800")
    page.wait_for_timeout(100)
    after = page.evaluate(CANVAS_STATS)
    assert after["hash"] != before["hash"]
    assert abs(after["mean"] - before["mean"]) > 5, (before, after)
    assert round(_state(page)["windowCenter"]) == 400
    expect(page.locator(".cell.active .overlay.br")).to_contain_text("W 1800 L 400")
    _screenshot(page, "ct-bone")


def test_viewer_scrolls_with_the_wheel_and_the_arrow_keys(viewer_page: Page) -> None:
    page = viewer_page
    page.evaluate("window.noctisViewer.scrollTo(0)")
    assert _state(page)["sliceIndex"] == 0
    box = page.locator(".cell.active .vp-element").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 120)
    page.wait_for_function("window.noctisViewer.state().sliceIndex > 0")
    after_wheel = _state(page)["sliceIndex"]
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"window.noctisViewer.state().sliceIndex === {after_wheel + 2}")
    expect(page.locator(".cell.active .overlay.bl")).to_contain_text(f"Im {after_wheel + 3}/{CT_SLICES}")
    page.keyboard.press("Home")
    page.wait_for_function("window.noctisViewer.state().sliceIndex === 0")
    page.keyboard.press("s")  # the Scroll tool: dragging down steps through the stack
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 100)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 100 + step * 20)
    page.mouse.up()
    page.wait_for_function("window.noctisViewer.state().sliceIndex > 0")
    page.keyboard.press("w")
    page.keyboard.press("End")
    page.wait_for_function(f"window.noctisViewer.state().sliceIndex === {CT_SLICES - 1}")


IMAGE_WIDTH_ON_SCREEN = """() => {
  // Each slice has one bright band across the whole image width: its longest lit run of canvas pixels is the
  // image's width on screen, found from the pixels alone.
  const canvas = document.querySelector('.cell.active canvas');
  const { data, width, height } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let longest = 0;
  for (let y = 0; y < height; y += 1) {
    let run = 0;
    for (let x = 0; x < width; x += 1) {
      const i = (y * width + x) * 4;
      run = data[i] + data[i + 1] + data[i + 2] > 30 ? run + 1 : 0;
      if (run > longest) longest = run;
    }
  }
  return longest * canvas.getBoundingClientRect().width / canvas.width;
}"""


def test_viewer_length_measurement_is_in_millimetres(viewer_page: Page) -> None:
    page = viewer_page
    page.keyboard.press("r")  # reset: default W/L and the fitted image
    page.wait_for_timeout(200)
    image_px = page.evaluate(IMAGE_WIDTH_ON_SCREEN)
    mm_per_px = CT_SIZE * PIXEL_SPACING / image_px
    page.click("button[data-tool=length]")
    box = page.locator(".cell.active .vp-element").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    start, end = (cx - 100, cy - 30), (cx + 60, cy + 90)
    page.mouse.move(*start)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(start[0] + (end[0] - start[0]) * step / 10, start[1] + (end[1] - start[1]) * step / 10)
    page.mouse.up()
    page.wait_for_function("noctisViewer.lastMeasurement?.tool === 'Length' && noctisViewer.lastMeasurement.completed")
    measured = page.evaluate("window.noctisViewer.lastMeasurement")
    expected = math.dist(start, end) * mm_per_px  # 200 screen px at ~0.18 mm each
    assert measured["unit"] == "mm"
    assert measured["length"] == pytest.approx(expected, rel=0.02), (measured, expected, image_px)
    expect(page.locator("ol.measurements")).to_contain_text(f"{measured['length']:.2f} mm")
    _screenshot(page, "length")
    page.click("button[data-tool=wl]")


def test_viewer_rectangle_and_ellipse_rois_give_area_mean_and_sd(viewer_page: Page) -> None:
    page = viewer_page
    page.keyboard.press("r")
    page.wait_for_timeout(200)
    mm_per_px = CT_SIZE * PIXEL_SPACING / page.evaluate(IMAGE_WIDTH_ON_SCREEN)
    page.keyboard.press("g")  # the rectangle ROI tool
    box = page.locator(".cell.active .vp-element").bounding_box()
    assert box is not None
    # Inside the inner disc, below the moving band: soft tissue of 40 + 3 * (column % 32) HU.
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    start, end = (cx - 50, cy + 20), (cx + 50, cy + 100)
    page.mouse.move(*start)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(start[0] + (end[0] - start[0]) * step / 10, start[1] + (end[1] - start[1]) * step / 10)
    page.mouse.up()
    page.wait_for_function(
        "noctisViewer.lastMeasurement?.tool === 'Rectangle' && noctisViewer.lastMeasurement.completed"
        " && Number.isFinite(noctisViewer.lastMeasurement.mean)"
    )
    roi = page.evaluate("window.noctisViewer.lastMeasurement")
    assert roi["areaUnit"] == "mm²"
    assert roi["area"] == pytest.approx(100 * 80 * mm_per_px**2, rel=0.06), roi
    assert 70 < roi["mean"] < 105, roi  # the stripes' mean, 86.5 HU over whole periods
    assert 18 < roi["stdDev"] < 35, roi  # their SD, 27.7 HU
    expect(page.locator("ol.measurements")).to_contain_text("HU")

    page.keyboard.press("e")  # the elliptical ROI is drawn from its centre to a corner of its bounding box
    start, end = (cx - 50, cy - 80), (cx + 50, cy)
    page.mouse.move(*start)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(start[0] + (end[0] - start[0]) * step / 10, start[1] + (end[1] - start[1]) * step / 10)
    page.mouse.up()
    page.wait_for_function(
        "noctisViewer.lastMeasurement?.tool === 'Ellipse' && noctisViewer.lastMeasurement.completed"
        " && Number.isFinite(noctisViewer.lastMeasurement.mean)"
    )
    ellipse = page.evaluate("window.noctisViewer.lastMeasurement")
    assert ellipse["areaUnit"] == "mm²"
    assert ellipse["area"] == pytest.approx(math.pi * 100 * 80 * mm_per_px**2, rel=0.08), ellipse  # semi-axes 100, 80
    assert ellipse["stdDev"] > 0, ellipse
    _screenshot(page, "roi")
    page.keyboard.press("w")


def test_viewer_decodes_every_compressed_series_in_the_browser(viewer_page: Page, viewer_study: ViewerStudy) -> None:
    page = viewer_page
    for syntax, series_uid in viewer_study.compressed.items():
        page.evaluate("uid => window.noctisViewer.loadSeries(uid)", series_uid)
        page.wait_for_function(
            "uid => { const s = window.noctisViewer.state(); return s.seriesUid === uid && s.loadedCount > 0; }",
            arg=series_uid,
        )
        page.wait_for_timeout(200)
        assert page.evaluate("window.noctisViewer.error") is None
        stats = page.evaluate(CANVAS_STATS)
        assert stats["lit"] > 0.2, f"{syntax}: the canvas is (nearly) blank: {stats}"
        frames = [r for r in page.frame_responses if series_uid in r[0]]  # type: ignore[attr-defined]
        assert frames
        assert all(status == 200 for _, status, _ in frames)
        assert all(f"transfer-syntax={syntax}" in ctype for _, _, ctype in frames), (
            f"{syntax}: frames not sent as stored: {frames}"
        )
        _screenshot(page, f"compressed-{syntax}")


def test_viewer_shows_dicom_text_as_text(viewer_page: Page) -> None:
    page = viewer_page
    expect(page.locator(".cell.active .overlay.tl")).to_contain_text(XSS_NAME)
    assert XSS_NAME in page.locator(".vbar .vpatient").inner_text()
    assert page.locator('img[src="x"]').count() == 0, "no element was made from the patient name"
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_viewer_invert_rotate_flip_fit_and_reset(viewer_page: Page, viewer_study: ViewerStudy) -> None:
    page = viewer_page
    page.evaluate("uid => window.noctisViewer.loadSeries(uid)", viewer_study.ct_series_uid)
    page.wait_for_function(f"window.noctisViewer.state().sliceCount === {CT_SLICES}")
    page.keyboard.press("r")
    page.wait_for_timeout(100)
    plain = page.evaluate(CANVAS_STATS)
    page.keyboard.press("i")
    page.wait_for_function("window.noctisViewer.state().invert")
    page.wait_for_timeout(100)
    inverted = page.evaluate(CANVAS_STATS)
    # Inside the image the black air turned white (the letterbox beside the image stays black).
    assert inverted["lit"] > plain["lit"] + 0.15, (plain, inverted)
    assert inverted["mean"] > plain["mean"] + 25, (plain, inverted)
    page.keyboard.press("]")
    page.keyboard.press("h")
    page.click("button[data-action=flip-v]")
    page.wait_for_function("(s => s.rotation === 90 && s.flipHorizontal && s.flipVertical)(noctisViewer.state())")
    expect(page.locator(".cell.active .overlay.br")).to_contain_text("Rot 90° Flip H Flip V Inverted")
    _screenshot(page, "rotated")
    page.keyboard.press("r")
    page.wait_for_function(
        "(s => !s.invert && s.rotation === 0 && !s.flipHorizontal && !s.flipVertical)(noctisViewer.state())"
    )
    page.wait_for_timeout(100)
    assert page.evaluate(CANVAS_STATS)["hash"] == plain["hash"], "reset gives back the first view"


def test_viewer_cine_plays_a_multiframe_image(viewer_page: Page, viewer_study: ViewerStudy) -> None:
    page = viewer_page
    page.evaluate("uid => window.noctisViewer.loadSeries(uid)", viewer_study.multiframe_series_uid)
    page.wait_for_function(
        f"uid => (s => s.seriesUid === uid && s.sliceCount === {MULTIFRAME_FRAMES})(noctisViewer.state())",
        arg=viewer_study.multiframe_series_uid,
    )
    expect(page.locator(".cell.active .overlay.bl")).to_contain_text(f"(frame 1/{MULTIFRAME_FRAMES})")
    page.keyboard.press("c")
    seen = set()
    for _ in range(40):
        seen.add(page.evaluate("window.noctisViewer.state().sliceIndex"))
        page.wait_for_timeout(50)
    page.keyboard.press("c")
    assert page.evaluate("window.noctisViewer.state().cine") is False
    assert len(seen) >= 4, f"cine showed frames {sorted(seen)}"


def test_viewer_layouts_show_series_side_by_side(viewer_page: Page) -> None:
    page = viewer_page
    page.click("button[data-layout='2x2']")
    page.wait_for_function("document.querySelectorAll('.cell canvas').length === 4")
    page.wait_for_function("window.noctisViewer.state().viewports === 4")
    page.wait_for_timeout(500)
    _screenshot(page, "2x2")
    page.click("button[data-layout='1x1']")
    page.wait_for_function("window.noctisViewer.state().viewports === 1")


def test_viewer_needs_a_login_and_a_known_study(stack: Stack, browser: Browser, viewer_study: ViewerStudy) -> None:  # noqa: F811
    context = browser.new_context()
    anonymous = context.request.get(f"{stack.base_url}/studies/{viewer_study.study_uid}/view", max_redirects=0)
    assert anonymous.status == 302
    assert "/login" in anonymous.headers["location"]
    context.close()


GPU_ARGS = ["--no-sandbox", "--disable-background-networking", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


def test_viewer_draws_on_the_gpu_path_too(stack: Stack, browser: Browser, viewer_study: ViewerStudy) -> None:  # noqa: F811
    """A reading-room browser has a GPU: Cornerstone's WebGL path (here on SwiftShader) draws the same study."""
    gpu_browser = browser.browser_type.launch(executable_path=CHROMIUM, args=GPU_ARGS)
    try:
        page = gpu_browser.new_page(viewport={"width": 1024, "height": 700})
        login(page, stack)
        page.goto(f"{stack.base_url}/studies/{viewer_study.study_uid}/view?rendering=gpu")
        page.wait_for_function("window.noctisViewer && (noctisViewer.ready || noctisViewer.error)", timeout=30_000)
        assert page.evaluate("window.noctisViewer.error") is None
        assert page.evaluate("window.noctisViewer.rendering") == "gpu"
        page.wait_for_timeout(200)
        before = page.evaluate(CANVAS_STATS)
        assert before["lit"] > 0.2, before
        page.keyboard.press("2")  # lung
        page.wait_for_function("Math.round(window.noctisViewer.state().windowWidth) === 1500")
        page.wait_for_timeout(200)
        assert page.evaluate(CANVAS_STATS)["hash"] != before["hash"]
        _screenshot(page, "gpu")
    finally:
        gpu_browser.close()
