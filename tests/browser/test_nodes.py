"""The node pages in a real browser against the real stack: an admin adds nodes and the C-ECHO button answers
inline (our own SCP as the peer, and a port nobody listens on); a node's name is shown as text; a study sent
from its page shows its progress on the Transfers page live (over /ws, without a reload)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pydicom
import pytest
from playwright.sync_api import Browser, Page, expect
from pydicom.uid import generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt

from tests.browser.test_worklist import browser, login
from tests.conftest import free_port, make_dataset, write_dataset
from tests.e2e.test_ingest import wait_for_instances
from tests.stack import Stack

__all__ = ["browser"]
pytestmark = pytest.mark.browser
XSS_NAME = "<img src=x onerror=alert(1)>"
STORE_SECONDS = 1.5


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


@pytest.fixture
def peer() -> Iterator[tuple[int, list[str]]]:
    """A pynetdicom Storage SCP (AE LIVEPEER) the stack's Celery worker sends to; yields (port, received UIDs)."""
    received: list[str] = []

    def on_store(event: Any) -> int:
        time.sleep(STORE_SECONDS)  # slow enough that the Transfers page sees the send before it ends
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    ae = AE(ae_title="LIVEPEER")
    for context in StoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield server.server_address[1], received
    server.shutdown()


def test_a_send_from_the_study_shows_its_progress_live(
    stack: Stack, browser: Browser, peer: tuple[int, list[str]], tmp_path: Path
) -> None:
    port, received = peer
    study_uid = generate_uid()
    files = [write_dataset(make_dataset(study_uid=study_uid, instance_number=n, patient_id="BROWSER-SEND"),
                           tmp_path / f"{n}.dcm") for n in (1, 2, 3)]  # fmt: skip
    ae = AE(ae_title="MODALITY1")
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert [assoc.send_c_store(path).Status for path in files] == [0, 0, 0]
    assoc.release()
    assert wait_for_instances(stack, study_uid, 3) == 3
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pacs_node (name, ae_title, host, port, enabled, last_error, created_at)"
            " VALUES ('live-peer', 'LIVEPEER', '127.0.0.1', %s, true, '', now())",
            (port,),
        )
    page = browser.new_page()
    try:
        login(page, stack)
        page.goto(f"{stack.base_url}/studies/{study_uid}/")
        page.click("#send-to-node")
        page.select_option("select[name=node]", label=f"live-peer (LIVEPEER@127.0.0.1:{port})")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**/nodes/transfers/")
        page.evaluate("window.__notReloaded = true")  # a reload would drop it: the row must change in place
        row = page.locator("tr[data-transfer]").first
        assert row.get_attribute("data-status") in ("pending", "running")
        expect(row).to_have_attribute("data-status", "done", timeout=20_000)
        expect(row.locator("td.t-progress")).to_contain_text("3/3")
        assert page.evaluate("window.__notReloaded === true")
        assert sorted(received) == sorted(pydicom.dcmread(p).SOPInstanceUID for p in files)
    finally:
        page.close()
        with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("UPDATE pacs_transfer SET node_id = NULL WHERE node_name = 'live-peer'")
            conn.execute("DELETE FROM pacs_node WHERE name = 'live-peer'")
