"""`make bench-viewer`: the viewer in headless Chromium on a 300-slice CT (512x512x16 bit).

1. Starts a private stack (ops.launch, as `make run` does), sends one 300-slice CT study with storescu and waits
   until QIDO-RS lists all of it.
2. First image: logs in, opens the worklist, clicks the study's "Open in viewer" link and takes the time from
   that click (a capture-phase listener stamps it) to the first image drawn (the viewer's IMAGE_RENDERED, from
   window.noctisViewer). Cold: a fresh browser profile (bundle, workers and codecs not cached). Warm: the same
   profile again (what a radiologist's second study costs); the median of BENCH_VIEWER_RUNS runs.
3. Scroll rate: once all 300 slices are loaded, steps through the stack one image at a time, each step waiting
   for the image to be drawn, and reports frames per second; also the time until the whole stack had arrived.

Goals (issue 5): first image under 1 s, scrolling at 30 frames/s or more. The machine is shared and noisy:
figures, not pass/fail. Printed, and written to var/bench/viewer-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pydicom
from playwright.sync_api import Browser, Page, sync_playwright

from ops.bench import ct_series, send
from ops.launch import Launched, stack_launch

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic"]
GOAL_FIRST_IMAGE_MS = 1000
GOAL_SCROLL_FPS = 30
SCREENSHOT_DIR = ROOT / "var" / "screenshots"

CLICK_STAMP = """() => document.addEventListener('click', (e) => {
  const now = performance.timeOrigin + performance.now();
  if (e.target.closest('a.open-viewer')) sessionStorage.setItem('benchClick', String(now));
}, true)"""
FIRST_IMAGE_MS = (
    """() => performance.timeOrigin + window.noctisViewer.firstImageAt - Number(sessionStorage.getItem('benchClick'))"""
)
# Where the time went, in ms after the click: the page, the bundle, the series metadata and the first frame.
BREAKDOWN = """() => {
  const click = Number(sessionStorage.getItem('benchClick')) - performance.timeOrigin;
  const at = (t) => Math.round(t - click);
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const find = (test) => res.find((e) => test(e.name));
  const bundle = find((n) => n.includes('/viewer.js'));
  const mark = (name) => {
    const m = performance.getEntriesByName(name, 'mark')[0];
    return m ? at(m.startTime) : null;
  };
  const meta = find((n) => n.endsWith('/metadata'));
  const frame = find((n) => n.includes('/frames/'));
  return {
    page: at(nav.responseEnd),
    bundle: bundle ? at(bundle.responseEnd) : null,
    bundle_run: mark('noctis:start'),
    init: mark('noctis:init'),
    json: mark('noctis:json'),
    metadata: meta ? [at(meta.startTime), at(meta.responseEnd)] : null,
    metadata_parsed: mark('noctis:metadata'),
    set_stack: mark('noctis:setStack'),
    first_frame: frame ? [at(frame.startTime), at(frame.responseEnd)] : null,
    drawn: at(window.noctisViewer.firstImageAt),
  };
}"""
SCROLL_ALL = """async () => {
  const v = window.noctisViewer;
  const n = v.state().sliceCount;
  await v.scrollTo(0);
  const t0 = performance.now();
  for (let i = 1; i < n; i += 1) await v.scrollTo(i);
  for (let i = n - 2; i >= 0; i -= 1) await v.scrollTo(i);
  const seconds = (performance.now() - t0) / 1000;
  return { frames: 2 * (n - 1), seconds };
}"""


def _login(page: Page, launched: Launched, base_url: str) -> None:
    page.goto(base_url + "/login/")
    page.fill("input[name=username]", launched.env["NOCTIS_ADMIN_USER"])
    page.fill("input[name=password]", launched.env["NOCTIS_ADMIN_PASSWORD"])
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()


def _wait_indexed(page: Page, base_url: str, study_uid: str, count: int, timeout: float = 300) -> None:
    url = f"{base_url}/api/v1/dicomweb/studies/{study_uid}/instances?limit=1000"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = page.request.get(url, headers={"Accept": "application/dicom+json"})
        if response.ok and response.status != 204 and len(response.json()) >= count:
            return
        time.sleep(1)
    raise SystemExit(f"the study was not indexed within {timeout:.0f} s: {url}")


def _open_from_worklist(page: Page, base_url: str, study_uid: str) -> tuple[float, dict[str, Any]]:
    """Milliseconds from the click on the worklist's viewer link to the first image drawn, and where they went."""
    page.goto(base_url + "/")
    link = page.locator(f'tr[data-study-uid="{study_uid}"] a.open-viewer')
    link.wait_for(timeout=30_000)
    page.evaluate(CLICK_STAMP)
    link.click()
    page.wait_for_function("window.noctisViewer && (noctisViewer.ready || noctisViewer.error)", timeout=60_000)
    error = page.evaluate("window.noctisViewer.error")
    if error:
        raise SystemExit(f"the viewer failed: {error}")
    return float(page.evaluate(FIRST_IMAGE_MS)), page.evaluate(BREAKDOWN)


def _first_image_runs(browser: Browser, launched: Launched, base_url: str, study_uid: str, runs: int) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    _login(page, launched, base_url)
    cold, cold_breakdown = _open_from_worklist(page, base_url, study_uid)
    warm_runs = [_open_from_worklist(page, base_url, study_uid) for _ in range(runs)]
    context.close()
    warm = [ms for ms, _ in warm_runs]
    return {
        "cold_ms": round(cold, 1),
        "cold_breakdown_ms": cold_breakdown,
        "warm_ms": [round(w, 1) for w in warm],
        "warm_median_ms": statistics.median(warm),
        "warm_breakdown_ms": [b for _, b in warm_runs],
    }


def _scroll_run(browser: Browser, launched: Launched, base_url: str, study_uid: str, slices: int) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    _login(page, launched, base_url)
    started = time.monotonic()
    _open_from_worklist(page, base_url, study_uid)
    page.wait_for_function(f"window.noctisViewer.state().loadedCount >= {slices}", timeout=300_000, polling=50)
    all_loaded_s = time.monotonic() - started
    state = page.evaluate("window.noctisViewer.state()")
    result = page.evaluate(SCROLL_ALL)
    rendering = page.evaluate("window.noctisViewer.rendering")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "bench-viewer.png"))
    context.close()
    return {
        "slices": state["sliceCount"],
        "all_loaded_s": round(all_loaded_s, 2),
        "scroll_frames": result["frames"],
        "scroll_fps": round(result["frames"] / result["seconds"], 1),
        "rendering": rendering,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=int(os.environ.get("BENCH_VIEWER_SLICES", "300")))
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_VIEWER_RUNS", "5")))
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing (make install-test installs it)")
    work = Path(tempfile.mkdtemp(prefix="noctis-bench-viewer-"))
    launched = None
    try:
        print(f"generating a {args.slices}-slice CT (512x512x16 bit) ...", flush=True)
        files = ct_series(work / "ct", args.slices)
        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        print("starting a private stack ...", flush=True)
        (work / "stack").mkdir()
        launched = stack_launch(work / "stack")
        base_url = f"http://127.0.0.1:{launched.env['NOCTIS_HTTP_PORT']}"
        send(files, port=int(launched.env["DICOM_PORT"]), ae_title=launched.env["DICOM_AE_TITLE"], associations=1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            _login(page, launched, base_url)
            _wait_indexed(page, base_url, study_uid, args.slices)
            page.close()
            time.sleep(3)  # thumbnails and analyses of the new study run now; let them finish first
            first = _first_image_runs(browser, launched, base_url, study_uid, args.runs)
            scroll = _scroll_run(browser, launched, base_url, study_uid, args.slices)
            browser.close()
    finally:
        if launched is not None:
            launched.stop()
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "first_image": first,
        "scroll": scroll,
        "goals": {"first_image_ms": GOAL_FIRST_IMAGE_MS, "fps": GOAL_SCROLL_FPS},
    }
    print(f"\nviewer, {scroll['slices']}-slice CT 512x512, headless Chromium ({scroll['rendering']} rendering)")
    print(
        f"  first image after the click, cold profile   {first['cold_ms']:8.0f} ms   (goal < {GOAL_FIRST_IMAGE_MS} ms)"
    )
    print(
        f"  first image after the click, warm (median)  {first['warm_median_ms']:8.0f} ms   "
        f"runs: {', '.join(f'{w:.0f}' for w in first['warm_ms'])}"
    )
    print("  where the time went (ms after the click; metadata and first frame: request start-end):")
    for label, breakdown in [("cold", first["cold_breakdown_ms"]), *(("warm", b) for b in first["warm_breakdown_ms"])]:
        print(f"    {label}  " + "  ".join(f"{k} {v}" for k, v in breakdown.items()))
    print(f"  whole stack loaded after                    {scroll['all_loaded_s']:8.2f} s")
    print(f"  scroll through the loaded stack             {scroll['scroll_fps']:8.1f} fps  (goal >= {GOAL_SCROLL_FPS})")
    out = ROOT / "var" / "bench" / f"viewer-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"  written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
