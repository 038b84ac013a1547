"""The viewer's Analyses panel and its streaming start, in Chromium against the real stack.

One study is sent with dcmtk's storescu: a 120-slice CT series and a 3-image series with a gap in its instance
numbers (1, 2, 4; its description an HTML payload). The stack's `process_ai_analyses` runs the arrival analysis
(study_inventory); the completeness analysis is asked for through the API while the viewer is open, and its outcome
must appear in the panel without a reload (analysis.completed on /ws).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pydicom
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect
from pydicom.uid import generate_uid

from noctis_pro.contracts.analysis_summaries import analysis_summary
from tests.browser.test_viewer import CANVAS_STATS
from tests.browser.test_worklist import XSS_NAME, browser, login, screenshot
from tests.conftest import make_dataset, write_dataset
from tests.stack import Stack

__all__ = ["browser"]  # the module-scoped Chromium fixture
pytestmark = pytest.mark.browser
STREAM_SLICES = 120
GAP_NUMBERS = (1, 2, 4)
DONE_TIMEOUT_MS = 60_000
FINISHED = ("done", "failed")


@dataclass
class AnalysedStudy:
    study_uid: str
    stream_series_uid: str
    gap_series_uid: str


@pytest.fixture(scope="module")
def analysed_study(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AnalysedStudy:
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    work = tmp_path_factory.mktemp("viewer-analyses")
    study_uid, stream_uid, gap_uid = generate_uid(), generate_uid(), generate_uid()
    files = []
    for n in range(1, STREAM_SLICES + 1):
        ds = make_dataset(
            study_uid=study_uid, series_uid=stream_uid, instance_number=n, patient_name="STREAM^VIEWER",
            patient_id="VIEWER-AI", SeriesNumber=1, SeriesDescription="Axial", SliceLocation=float(n),
            ImagePositionPatient=[0.0, 0.0, float(n)], ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            PixelSpacing=[0.5, 0.5], SliceThickness=1.0,
        )  # fmt: skip
        files.append(write_dataset(ds, work / f"s{n}.dcm"))
    for n in GAP_NUMBERS:
        ds = make_dataset(
            study_uid=study_uid, series_uid=gap_uid, instance_number=n, patient_name="STREAM^VIEWER",
            patient_id="VIEWER-AI", SeriesNumber=2, SeriesDescription=XSS_NAME, SliceLocation=float(n),
            ImagePositionPatient=[0.0, 0.0, float(n)], ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            PixelSpacing=[0.5, 0.5], SliceThickness=1.0,
        )  # fmt: skip
        files.append(write_dataset(ds, work / f"g{n}.dcm"))
    sent = subprocess.run(
        ["storescu", "-aec", stack.ae_title, "127.0.0.1", str(stack.dicom_port), *map(str, files)],
        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return AnalysedStudy(study_uid, stream_uid, gap_uid)


@pytest.fixture(scope="module")
def context(stack: Stack, browser: Browser, analysed_study: AnalysedStudy) -> Iterator[BrowserContext]:
    """Signed in, with the study indexed and its arrival analysis done (the stack's AI processor)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    login(page, stack)
    _analyses_until(
        page,
        stack,
        analysed_study,
        lambda rows: any(r["analyzer"] == "study_inventory" and r["status"] == "done" for r in rows),
    )
    page.close()
    yield context
    context.close()


def _analyses(page: Page, stack: Stack, study: AnalysedStudy) -> list[dict[str, Any]]:
    response = page.request.get(f"{stack.base_url}/api/v1/studies/{study.study_uid}/analyses")
    return response.json() if response.ok else []


def _analyses_until(page: Page, stack: Stack, study: AnalysedStudy, done: Any) -> list[dict[str, Any]]:
    for _ in range(DONE_TIMEOUT_MS // 250):
        rows = _analyses(page, stack, study)
        if rows and done(rows):
            return rows
        page.wait_for_timeout(250)
    raise AssertionError(f"the analyses did not finish: {_analyses(page, stack, study)}")


def _open_viewer(context: BrowserContext, stack: Stack, study: AnalysedStudy) -> Page:
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    # Room for every frame's resource-timing entry (the default buffer holds 250).
    page.add_init_script("performance.setResourceTimingBufferSize(5000)")
    page.goto(f"{stack.base_url}/studies/{study.study_uid}/view")
    page.wait_for_function("window.noctisViewer && (noctisViewer.ready || noctisViewer.error)", timeout=30_000)
    assert page.evaluate("window.noctisViewer.error") is None
    return page


FRAME_TIMINGS = """() => performance.getEntriesByType('resource')
  .filter((e) => e.name.includes('/frames/'))
  .map((e) => ({ url: e.name, end: e.responseEnd }))"""


def test_viewer_draws_the_first_image_before_the_series_has_arrived(
    stack: Stack, context: BrowserContext, analysed_study: AnalysedStudy
) -> None:
    """Ordering, not durations: the first frame requested goes through, every later frame of the series is held
    until the first image is drawn. A viewer that needed the whole series first would never draw (and fail here);
    this one draws the shown slice while the rest of the stack is still outstanding, then the rest arrives."""
    page = context.new_page()
    page.add_init_script("performance.setResourceTimingBufferSize(5000)")  # every frame's timing entry
    held: list[Route] = []
    passed: list[str] = []
    gate = {"open": False}

    def frames(route: Route) -> None:
        if gate["open"] or not passed:
            passed.append(route.request.url)
            route.continue_()
        else:
            held.append(route)

    page.route("**/frames/**", frames)
    page.goto(f"{stack.base_url}/studies/{analysed_study.study_uid}/view")
    page.wait_for_function("window.noctisViewer && (noctisViewer.ready || noctisViewer.error)", timeout=30_000)
    assert page.evaluate("window.noctisViewer.error") is None
    state = page.evaluate("window.noctisViewer.state()")
    assert state["seriesUid"] == analysed_study.stream_series_uid
    assert state["sliceCount"] == STREAM_SLICES
    assert state["sliceIndex"] == 0
    assert len(passed) == 1, passed
    assert held, "the rest of the series is requested once the first image is on its way"
    page.wait_for_timeout(100)  # let the held requests pile up: none of them may be needed for the first image
    assert state["loadedCount"] < STREAM_SLICES
    assert page.evaluate(CANVAS_STATS)["lit"] > 0.1, "the first image is drawn while its series is outstanding"
    first_at = page.evaluate("window.noctisViewer.firstImageAt")
    assert page.evaluate("window.noctisViewer.firstImageLoaded") < STREAM_SLICES

    gate["open"] = True
    for route in held:
        route.continue_()
    page.wait_for_function(f"window.noctisViewer.state().loadedCount === {STREAM_SLICES}", timeout=60_000)
    arrived = [f for f in page.evaluate(FRAME_TIMINGS) if analysed_study.stream_series_uid in f["url"]]
    assert len({f["url"] for f in arrived}) == STREAM_SLICES
    late = [f for f in arrived if f["end"] > first_at]
    assert len(late) >= STREAM_SLICES - 1, "the series finished arriving after the first image was drawn"
    expect(page.locator(".cell.active .overlay.status")).to_have_text("")  # "n/120 loaded" gone once all arrived
    page.close()


def test_viewer_analyses_panel_lists_results_live_and_selects_the_series(
    stack: Stack, context: BrowserContext, analysed_study: AnalysedStudy, api_token: str
) -> None:
    page = _open_viewer(context, stack, analysed_study)
    page.evaluate("window.__notReloaded = true")
    panel = page.locator(".analyses-panel")
    inventory = panel.locator(".analysis[data-analyzer=study_inventory]")
    expect(inventory).to_have_count(1, timeout=15_000)
    expect(inventory.locator(".status")).to_have_text("done")
    expect(inventory.locator(".summary")).to_have_text(
        re.compile(rf"^2 series, {STREAM_SLICES + len(GAP_NUMBERS)} images\b")
    )
    page.wait_for_function("window.noctisViewer.analyses.live === true", timeout=15_000)

    # Asked for now (as the study page's Analyse button does): queued once per image series, run by the processor.
    asked = page.request.post(
        f"{stack.base_url}/api/v1/studies/{analysed_study.study_uid}/analyses",
        data={"analyzer": "series_completeness"},
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert asked.status == 202, asked.text()
    completeness = panel.locator(".analysis[data-analyzer=series_completeness]")
    expect(completeness).to_have_count(2, timeout=DONE_TIMEOUT_MS)
    expect(completeness.locator(".status").filter(has_text="done")).to_have_count(2, timeout=DONE_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded") is True, "the panel changed in place, not by a reload"

    stream = panel.locator(f'.analysis[data-series-uid="{analysed_study.stream_series_uid}"]')
    gap = panel.locator(f'.analysis[data-series-uid="{analysed_study.gap_series_uid}"]')
    expect(stream.locator(".name")).to_have_text("completeness #1")
    expect(stream.locator(".summary")).to_have_text("complete")
    expect(gap.locator(".name")).to_have_text("completeness #2")
    expect(gap.locator(".summary")).to_have_text("gap at 3, uneven spacing")
    # The panel says what the worklist's AI badge says (contracts.analysis_summaries, served by the API) for the
    # newest analysis of each analyzer and series, once all are finished (the completeness SRs are inventoried too).
    rows = _analyses_until(page, stack, analysed_study, lambda rows: all(r["status"] in FINISHED for r in rows))
    numbers = {analysed_study.stream_series_uid: 1, analysed_study.gap_series_uid: 2}
    newest: dict[tuple[str, str | None], dict[str, Any]] = {}
    for row in rows:  # newest first
        newest.setdefault((row["analyzer"], row["series_uid"]), row)
    for (analyzer, series_uid), row in newest.items():
        where = f'[data-series-uid="{series_uid}"]' if series_uid else ":not([data-series-uid])"
        shown = panel.locator(f'.analysis[data-analyzer="{analyzer}"]{where}')
        expected = analysis_summary(
            analyzer=analyzer, status=row["status"], result=row["result"], error=row["error"],
            series_number=numbers.get(series_uid or ""),
        )  # fmt: skip
        label, summary = expected.split(": ", 1)
        expect(shown.locator(".name")).to_have_text(label)
        expect(shown.locator(".summary")).to_have_text(summary)
    # The series description (an HTML payload) is text in the tooltip, never markup.
    assert gap.get_attribute("title") == XSS_NAME
    assert panel.locator("img").count() == 0

    gap.click()
    page.wait_for_function(
        f"window.noctisViewer.state().seriesUid === '{analysed_study.gap_series_uid}'"
        f" && window.noctisViewer.state().sliceCount === {len(GAP_NUMBERS)}",
        timeout=15_000,
    )
    expect(gap).to_have_class(re.compile(r"\bon\b"))
    expect(page.locator(f'button.series.on[data-series-uid="{analysed_study.gap_series_uid}"]')).to_have_count(1)
    assert page.dialogs == []  # type: ignore[attr-defined]
    screenshot(page, "viewer-analyses.png")
    page.close()
