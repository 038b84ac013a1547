"""The worklist in a real browser (Debian's Chromium driven by Playwright) against the real stack."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from pydicom.uid import generate_uid

from tests.conftest import make_dataset, write_dataset
from tests.stack import Stack

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic"],
        )
        yield browser
        browser.close()


def login(page: Page, stack: Stack) -> None:
    page.goto(stack.base_url + "/")
    assert "/login" in page.url, "anonymous visitors are sent to the login page"
    page.fill("input[name=username]", stack.admin_user)
    page.fill("input[name=password]", stack.admin_password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_selector("table.worklist")


def test_worklist_adds_a_new_study_live_and_shows_dicom_text_as_text(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(page, stack)
    page.wait_for_selector("#live-status.on", timeout=15_000)
    rows_before = page.locator("tr[data-study-uid]").count()

    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    study_uid = generate_uid()
    path = write_dataset(
        make_dataset(study_uid=study_uid, patient_name=XSS_NAME, patient_id="BROWSER-1"), tmp_path / "xss.dcm"
    )
    sent = subprocess.run(
        ["storescu", "-aec", stack.ae_title, "127.0.0.1", str(stack.dicom_port), str(path)],
        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr

    row = page.wait_for_selector(f'tr[data-study-uid="{study_uid}"]', timeout=15_000)
    assert row is not None
    assert XSS_NAME in row.inner_text(), "the patient name is shown as text"
    assert page.locator('img[src="x"]').count() == 0, "no element was made from the patient name"
    assert page.locator("tr[data-study-uid]").count() == rows_before + 1
    assert dialogs == []
    page.close()
