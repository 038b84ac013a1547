"""`manage.py dicom_node add|list|remove|echo`: remote DICOM nodes from the command line (pacs.nodes).

dicom_node add NAME AE_TITLE HOST PORT [--no-store] [--no-query] [--no-retrieve] [--no-receive] [--disabled]
dicom_node list
dicom_node remove NAME
dicom_node echo NAME [--timeout S]     exit status 0 when the node answered the C-ECHO, 1 otherwise
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from noctis_pro.core.exceptions import NoctisError
from noctis_pro.pacs.models import Node
from noctis_pro.pacs.nodes import NodeFields, node_create, node_delete, node_echo, node_get


class Command(BaseCommand):
    help = "Manage the remote DICOM nodes: add, list, remove, echo (C-ECHO test)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list,remove,echo}")
        add = actions.add_parser("add", help="register a node")
        add.add_argument("name")
        add.add_argument("ae_title")
        add.add_argument("host")
        add.add_argument("port", type=int)
        for capability, meaning in (
            ("store", "may not C-STORE to us"),
            ("query", "may not C-FIND us"),
            ("retrieve", "may not C-MOVE/C-GET from us"),
            ("receive", "is never sent to (no forwards, sends or C-MOVE to it)"),
        ):
            add.add_argument(f"--no-{capability}", action="store_true", help=f"the node {meaning}")
        add.add_argument("--disabled", action="store_true", help="register it switched off")
        actions.add_parser("list", help="list the nodes")
        remove = actions.add_parser("remove", help="remove a node and its routing rules")
        remove.add_argument("name")
        echo = actions.add_parser("echo", help="C-ECHO a node; exit status 0 if it answered")
        echo.add_argument("name")
        echo.add_argument("--timeout", type=float, default=5.0)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except NoctisError as exc:
            raise CommandError(exc.message) from None

    def _add(self, options: dict[str, Any]) -> None:
        node = node_create(
            fields=NodeFields(
                name=options["name"],
                ae_title=options["ae_title"],
                host=options["host"],
                port=options["port"],
                enabled=not options["disabled"],
                may_store=not options["no_store"],
                may_query=not options["no_query"],
                may_retrieve=not options["no_retrieve"],
                may_receive=not options["no_receive"],
            )
        )
        self.stdout.write(f"added {_line(node)}")

    def _list(self, options: dict[str, Any]) -> None:
        nodes = list(Node.objects.order_by("name"))
        if not nodes:
            self.stdout.write("no nodes")
        for node in nodes:
            self.stdout.write(_line(node))

    def _remove(self, options: dict[str, Any]) -> None:
        node = node_get(name_or_id=options["name"])
        node_delete(node=node)
        self.stdout.write(f"removed {node.name}")

    def _echo(self, options: dict[str, Any]) -> None:
        node = node_get(name_or_id=options["name"])
        result = node_echo(node=node, timeout=options["timeout"])
        if result.ok:
            self.stdout.write(f"OK {node.name}: {result.message} in {result.elapsed_ms:.0f} ms")
            return
        self.stdout.write(f"FAILED {node.name}: {result.message}")
        raise SystemExit(1)


def _line(node: Node) -> str:
    state = "enabled" if node.enabled else "disabled"
    capabilities = ",".join(node.capabilities) or "none"
    return f"{node.name}\t{node.ae_title}@{node.host}:{node.port}\t{state}\tmay: {capabilities}"
