"""Reports in a real browser against the real stack: a radiologist writes (autosaved) and signs a report while
the worklist in another tab turns the study "Final" live; the PDF shows the patient name as text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from pypdf import PdfReader

from tests.browser.test_worklist import (  # noqa: F401 (fixtures)
    PASSWORD,
    XSS_NAME,
    browser,
    login,
    role_users,
    screenshot,
    storescu,
)
from tests.stack import Stack

pytestmark = pytest.mark.browser


def test_write_and_sign_a_report_and_the_worklist_follows_live(
    stack: Stack,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
    role_users: dict[str, str],  # noqa: F811
) -> None:
    study_uid = storescu(stack, tmp_path, patient_name=XSS_NAME, patient_id="REPORT-1")
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    dialogs: list[str] = []
    worklist = context.new_page()
    worklist.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(worklist, stack, role_users["radiologist"], PASSWORD)
    worklist.wait_for_selector("#live-status.on", timeout=15_000)
    row = f'tr[data-study-uid="{study_uid}"]'
    worklist.wait_for_selector(row, timeout=15_000)
    assert worklist.inner_text(f"{row} .badge") == "Unread"
    final_count = '#status-counts a[data-status="final"] .count'
    finals_before = int(worklist.inner_text(final_count))

    report = context.new_page()  # the same login, a second tab
    report.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    report.goto(f"{stack.base_url}/studies/{study_uid}/report/")
    report.fill("#findings", "Lungs clear. <b>No</b> effusion.")
    report.wait_for_function(
        "document.getElementById('autosave-state').textContent.startsWith('Draft saved')", timeout=10_000
    )
    worklist.wait_for_selector(f'{row}[data-status="in_progress"]', timeout=15_000)
    report.reload()  # the autosaved draft is there after a reload
    assert report.input_value("#findings") == "Lungs clear. <b>No</b> effusion."
    report.fill("#impression", "Normal chest.")
    report.click("#report-sign")
    report.wait_for_selector("#report-view")
    assert report.inner_text("#report-findings") == "Lungs clear. <b>No</b> effusion."
    assert report.locator("textarea#findings").count() == 0, "a signed report is not editable"

    worklist.wait_for_selector(f'{row}[data-status="final"]', timeout=15_000)  # live, no reload
    assert worklist.inner_text(f"{row} .badge") == "Final"
    assert int(worklist.inner_text(final_count)) == finals_before + 1  # the tab's count follows live
    screenshot(worklist, "worklist-after-sign.png")

    pdf = report.request.get(f"{stack.base_url}/studies/{study_uid}/report.pdf")
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.body())).pages)
    assert XSS_NAME in text
    assert "Normal chest." in text
    assert dialogs == []
    context.close()


def test_technologist_sees_no_sign_button(
    stack: Stack,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
    role_users: dict[str, str],  # noqa: F811
) -> None:
    study_uid = storescu(stack, tmp_path, patient_name="TECH^VIEW")
    page = browser.new_page()
    login(page, stack, role_users["technologist"], PASSWORD)
    response = page.goto(f"{stack.base_url}/studies/{study_uid}/report/")
    assert response is not None
    assert response.status == 404  # nothing written yet, and a technologist does not write
    page.goto(f"{stack.base_url}/studies/{study_uid}/")
    assert page.locator("#open-report").count() == 0
    page.close()
