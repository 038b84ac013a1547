"""`manage.py dicom_node add|list|remove|echo`, echo against a real dcmtk storescp."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from noctis_pro.pacs.models import ForwardRule, Node
from tests.conftest import free_port
from tests.integration.nodes.conftest import StoreScp

pytestmark = pytest.mark.django_db


def test_add_list_remove(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("dicom_node", "add", "reading-room", "WS1", "10.1.2.3", "104", "--no-query", "--no-retrieve")
    node = Node.objects.get(name="reading-room")
    assert (node.ae_title, node.host, node.port) == ("WS1", "10.1.2.3", 104)
    assert (node.may_store, node.may_query, node.may_retrieve, node.may_receive) == (True, False, False, True)

    call_command("dicom_node", "list")
    out = capsys.readouterr().out
    assert "reading-room\tWS1@10.1.2.3:104\tenabled\tmay: store,receive" in out

    ForwardRule.objects.create(name="all", node=node)
    call_command("dicom_node", "remove", "reading-room")
    assert not Node.objects.exists()
    assert not ForwardRule.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["n", "BAD\\AE", "127.0.0.1", "104"], "ae_title may hold only printable ASCII characters"),
        (["n", "A" * 17, "127.0.0.1", "104"], "ae_title is longer than 16 characters"),
        (["n", "AE", "not a host!", "104"], "host is not an IP address or host name"),
        (["n", "AE", "127.0.0.1", "70000"], "port must be between 1 and 65535"),
    ],
)
def test_add_refuses_bad_values(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("dicom_node", "add", *args)
    assert not Node.objects.exists()


def test_add_refuses_a_taken_name_or_ae_title() -> None:
    call_command("dicom_node", "add", "one", "AE1", "127.0.0.1", "104")
    with pytest.raises(CommandError, match="a node named 'one' exists already"):
        call_command("dicom_node", "add", "one", "AE2", "127.0.0.1", "104")
    with pytest.raises(CommandError, match="AE title 'AE1' exists already"):
        call_command("dicom_node", "add", "two", "AE1", "127.0.0.1", "104")


def test_echo_succeeds_against_a_real_peer(storescp: StoreScp, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("dicom_node", "add", "peer", storescp.ae_title, "127.0.0.1", str(storescp.port))
    call_command("dicom_node", "echo", "peer")  # returns: exit status 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"OK peer: STORESCP@127.0.0.1:{storescp.port}: C-ECHO")


def test_echo_of_a_silent_node_exits_1_with_a_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    call_command("dicom_node", "add", "gone", "GONE", "127.0.0.1", str(port))
    with pytest.raises(SystemExit) as exited:
        call_command("dicom_node", "echo", "gone", "--timeout", "2")
    assert exited.value.code == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"FAILED gone: GONE@127.0.0.1:{port}: no answer (refused, unreachable or timed out)"


def test_remove_or_echo_of_an_unknown_node_is_an_error() -> None:
    with pytest.raises(CommandError, match="no node 'nope'"):
        call_command("dicom_node", "remove", "nope")
    with pytest.raises(CommandError, match="no node 'nope'"):
        call_command("dicom_node", "echo", "nope")
