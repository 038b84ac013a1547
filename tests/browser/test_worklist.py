"""The worklist in a real browser (Debian's Chromium driven by Playwright) against the real stack: live rows,
filters, DICOM text shown as text, roles, and anonymous visitors sent to the login page. Screenshots of the
worklist go to var/screenshots/ for people to look at."""

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
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "browser-test-password-42"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def role_users(stack: Stack) -> dict[str, str]:
    """One user per role (no facility: they see the studies of unassigned senders, like storescu's)."""
    names = {role: f"browser_{role}" for role in ("radiologist", "technologist", "referrer")}
    code = (
        "from django.contrib.auth.models import Group, User\n"
        f"for role, name in {names!r}.items():\n"
        "    user, _ = User.objects.get_or_create(username=name)\n"
        f"    user.set_password({PASSWORD!r}); user.save()\n"
        "    user.groups.set([Group.objects.get_or_create(name=role)[0]])\n"
    )
    stack.manage("shell", "-c", code)
    return names


def login(page: Page, stack: Stack, username: str | None = None, password: str | None = None) -> None:
    page.goto(stack.base_url + "/")
    assert "/login" in page.url, "anonymous visitors are sent to the login page"
    page.fill("input[name=username]", username or stack.admin_user)
    page.fill("input[name=password]", password or stack.admin_password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_selector("table.worklist")


def storescu(stack: Stack, tmp_path: Path, **attrs: object) -> str:
    """Send one new study with dcmtk's storescu; returns its Study Instance UID."""
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    study_uid = generate_uid()
    path = write_dataset(make_dataset(study_uid=study_uid, **attrs), tmp_path / f"{study_uid}.dcm")  # type: ignore[arg-type]
    sent = subprocess.run(
        ["storescu", "-aec", stack.ae_title, "127.0.0.1", str(stack.dicom_port), str(path)],
        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return study_uid


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_worklist_adds_a_new_study_live_and_shows_dicom_text_as_text(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(page, stack)
    page.wait_for_selector("#live-status.on", timeout=15_000)
    rows_before = page.locator("tr[data-study-uid]").count()

    study_uid = storescu(stack, tmp_path, patient_name=XSS_NAME, patient_id="BROWSER-1")

    row = page.wait_for_selector(f'tr[data-study-uid="{study_uid}"]', timeout=15_000)
    assert row is not None
    assert XSS_NAME in row.inner_text(), "the patient name is shown as text"
    assert page.locator('img[src="x"]').count() == 0, "no element was made from the patient name"
    assert page.locator("tr[data-study-uid]").count() == rows_before + 1
    screenshot(page, "worklist-live.png")

    page.click(f'tr[data-study-uid="{study_uid}"] td.name a')
    page.wait_for_selector("section.study-head h1")
    assert XSS_NAME in page.inner_text("section.study-head h1"), "the study page shows the name as text"
    assert page.locator('img[src="x"]').count() == 0
    assert dialogs == []
    page.close()


def test_worklist_filters_and_sorts(stack: Stack, browser: Browser, tmp_path: Path) -> None:
    mr = storescu(stack, tmp_path, modality="MR", patient_name="FILTER^MARIA", patient_id="FLT-MR")
    ct = storescu(stack, tmp_path, modality="CT", patient_name="FILTER^CARLOS", patient_id="FLT-CT")
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    login(page, stack)
    page.wait_for_selector(f'tr[data-study-uid="{mr}"]', timeout=15_000)
    page.wait_for_selector(f'tr[data-study-uid="{ct}"]', timeout=15_000)

    page.fill("input[name=q]", "filter^")
    page.fill("input[name=modality]", "MR")
    page.click("#worklist-filters button[type=submit]")
    page.wait_for_load_state()
    uids = page.locator("tr[data-study-uid]").evaluate_all("rows => rows.map(r => r.dataset.studyUid)")
    assert uids == [mr]
    screenshot(page, "worklist-filtered.png")

    page.fill("input[name=q]", "FLT-CT")  # a patient ID matches exactly
    page.fill("input[name=modality]", "")
    page.click("#worklist-filters button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("tr[data-study-uid]").evaluate_all("rows => rows.map(r => r.dataset.studyUid)") == [ct]

    page.goto(stack.base_url + "/?q=filter&ordering=patient_name")
    names = page.locator("tr[data-study-uid] td.name").all_inner_texts()
    assert names == sorted(names)
    assert len(names) == 2
    page.click("a.sort[data-sort=patient_name]")  # again: descending
    page.wait_for_load_state()
    assert page.locator("tr[data-study-uid] td.name").all_inner_texts() == sorted(names, reverse=True)
    page.close()


def test_referrer_cannot_open_the_admin_or_sign(
    stack: Stack, browser: Browser, tmp_path: Path, role_users: dict[str, str]
) -> None:
    study_uid = storescu(stack, tmp_path, patient_name="REFERRED^PAT")
    page = browser.new_page()
    login(page, stack, role_users["referrer"], PASSWORD)
    assert page.locator("nav a", has_text="Admin").count() == 0
    page.goto(stack.base_url + "/admin/")
    assert "/admin/login/" in page.url, "the admin sends a referrer to its login page"
    assert page.locator("#content-main").count() == 0 or "not authorized" in page.content()

    page.wait_for_timeout(0)
    page.goto(stack.base_url + "/")
    page.wait_for_selector(f'tr[data-study-uid="{study_uid}"]', timeout=15_000)
    assert page.locator(f'tr[data-study-uid="{study_uid}"] .action-assign').count() == 0
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    signed = page.request.post(
        f"{stack.base_url}/studies/{study_uid}/report/",
        form={"action": "sign", "findings": "not mine to sign"},
        headers={"X-CSRFToken": csrf, "Referer": stack.base_url + "/"},
    )
    assert signed.status == 403
    assert page.request.get(f"{stack.base_url}/audit/").status == 403
    page.close()


def test_anonymous_requests_to_every_page_go_to_login(stack: Stack, browser: Browser) -> None:
    uid = "1.2.3.4.5"
    pages = [
        "/",
        f"/studies/{uid}/",
        f"/studies/{uid}/view",
        f"/studies/{uid}/report/",
        f"/studies/{uid}/report.pdf",
        f"/worklist/rows/{uid}/",
        "/worklist/thumbnails/1.2.3.png",
        "/audit/",
        "/admin/",
    ]
    context = browser.new_context()
    for path in pages:
        response = context.request.get(stack.base_url + path, max_redirects=0)
        assert response.status == 302, path
        assert "/login/" in response.headers["location"], path
    context.close()
