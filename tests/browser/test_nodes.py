"""The nodes page in a real browser against the real stack: an admin adds nodes and the C-ECHO button answers
inline (our own SCP as the peer, and a port nobody listens on); a node's name is shown as text."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_worklist import browser, login
from tests.conftest import free_port
from tests.stack import Stack

__all__ = ["browser"]
pytestmark = pytest.mark.browser
XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture
def page(stack: Stack, browser: Browser) -> Iterator[Page]:
    page = browser.new_page()
    yield page
    page.close()
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:  # faster than two manage.py runs
        conn.execute("DELETE FROM pacs_node WHERE name = ANY(%s)", (["self", XSS_NAME],))


def _add_node(page: Page, *, name: str, ae_title: str, port: int) -> None:
    form = page.locator("form.filters[method=post]")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=ae_title]").fill(ae_title)
    form.locator("input[name=host]").fill("127.0.0.1")
    form.locator("input[name=port]").fill(str(port))
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()


def test_admin_adds_nodes_and_echoes_them_inline(stack: Stack, page: Page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(page, stack)
    page.click("header nav >> text=Nodes")
    expect(page.locator("h1")).to_have_text("DICOM nodes")

    _add_node(page, name="self", ae_title=stack.ae_title, port=stack.dicom_port)
    _add_node(page, name=XSS_NAME, ae_title="NOBODY", port=free_port())

    ours = page.locator("tr", has_text=stack.ae_title)
    ours.locator("button", has_text="C-ECHO").click()
    expect(ours.locator(".echo-result.status-done")).to_contain_text("OK, ", timeout=15_000)

    silent = page.locator("tr", has_text="NOBODY")
    expect(silent.locator("td").first).to_have_text(XSS_NAME)  # shown as text, not markup
    silent.locator("button", has_text="C-ECHO").click()
    expect(silent.locator(".echo-result.error")).to_contain_text("no answer", timeout=15_000)
    assert dialogs == []
