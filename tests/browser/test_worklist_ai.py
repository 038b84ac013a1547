"""The worklist's AI badge in a real browser against the real stack (its `process_ai_analyses` processor): a CT
series sent with storescu gets its arrival analysis, and the row's badge goes from waiting to done without a reload
when `analysis.completed` arrives on /ws; an analysis asked for with the study page's Analyse button follows."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import Browser, Page, expect
from pydicom.uid import generate_uid

from tests.browser.test_worklist import browser, login, screenshot
from tests.conftest import make_dataset, write_dataset
from tests.stack import Stack

__all__ = ["browser"]  # the module-scoped Chromium fixture
pytestmark = pytest.mark.browser
SLICES = 3
# The arrival analysis (AI_AUTO_ANALYZERS, study_inventory) waits AI_QUIET_SECONDS, then runs: well under this.
DONE_TIMEOUT_MS = 60_000


def ct_series_send(stack: Stack, tmp_path: Path) -> str:
    """A 3-slice CT series of a new study, sent with dcmtk's storescu in one association; its Study UID."""
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [
        write_dataset(
            make_dataset(study_uid=study_uid, series_uid=series_uid, instance_number=n, patient_name="AI^BADGE"),
            tmp_path / f"{n}.dcm",
        )
        for n in range(1, SLICES + 1)
    ]
    sent = subprocess.run(
        ["storescu", "-aec", stack.ae_title, "127.0.0.1", str(stack.dicom_port), *map(str, files)],
        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return study_uid


def badge_text(page: Page, study_uid: str) -> str:
    return page.locator(f'tr[data-study-uid="{study_uid}"] td.ai').inner_text().strip()


def test_ai_badge_turns_done_live_and_follows_an_analyse_request(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    login(page, stack)
    page.wait_for_selector("#live-status.on", timeout=15_000)
    page.evaluate("window.__notReloaded = true")

    study_uid = ct_series_send(stack, tmp_path)

    row = page.locator(f'tr[data-study-uid="{study_uid}"]')
    expect(row).to_have_count(1, timeout=15_000)
    expect(row.locator("td.ai")).to_contain_text(re.compile(r"AI: .*(pending|running)"), timeout=15_000)
    waiting = badge_text(page, study_uid)

    done = row.locator("td.ai .badge.ai-done")
    expect(done).to_have_text(re.compile(r"^AI: \d+ done$"), timeout=DONE_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded") is True, "the row changed in place, not by a reload"
    title = done.get_attribute("title") or ""
    assert f"inventory: 1 series, {SLICES} images, no gaps" in title.splitlines(), title
    assert waiting != badge_text(page, study_uid)
    screenshot(page, "worklist-ai-badge.png")

    # Ask for the image quality analysis from the study page; back on the worklist its outcome arrives live.
    study_page = context.new_page()  # same session, second tab
    study_page.goto(f"{stack.base_url}/studies/{study_uid}/")
    study_page.select_option("#analyse-form select[name=analyzer]", "image_quality")
    study_page.click("#analyse")
    expect(study_page).to_have_url(re.compile(r"#analyses$"))
    expect(study_page.locator("table.analyses td", has_text="image_quality").first).to_be_visible()
    study_page.close()

    expect(done).to_have_attribute("title", re.compile(r"^quality #1: SNR ", re.M), timeout=DONE_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded") is True
    context.close()
