"""Remote DICOM nodes and transfers: the validation rules, statuses and Celery task names that Django
(noctis_pro.pacs.nodes, the CLI, the UI) and FastAPI (fastapi_app/routers/nodes.py) share.

Tables: pacs_node, pacs_forwardrule, pacs_transfer (noctis_pro/pacs/models.py). The Rust SCP reads pacs_node
(ae_title, host, port, enabled and the may_* capabilities) to resolve C-MOVE destinations and calling AEs.
"""

from __future__ import annotations

import ipaddress
import re

MAX_NAME_LENGTH = 64
MAX_AE_TITLE_LENGTH = 16  # PS3.5 6.2, VR AE
MAX_HOST_LENGTH = 255

# Transfer.kind
KIND_SEND = "send"  # a user asked: study/series from us to a node (C-STORE SCU)
KIND_FORWARD = "forward"  # a routing rule on arrival (C-STORE SCU)
KIND_RETRIEVE = "retrieve"  # from a node into us (C-MOVE SCU, our AE as destination)
KINDS = (KIND_SEND, KIND_FORWARD, KIND_RETRIEVE)

# Transfer.status
PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
STATUSES = (PENDING, RUNNING, DONE, FAILED)
ACTIVE_STATUSES = (PENDING, RUNNING)

# Celery task names (explicit in noctis_pro/pacs/tasks.py) so FastAPI can enqueue with send_task.
TASK_TRANSFER_RUN = "noctis_pro.pacs.tasks.transfer_run"

_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def name_problem(value: str | None) -> str | None:
    if value is None or not value.strip():
        return "is required"
    if len(value) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains control characters"
    return None


def ae_title_problem(value: str | None) -> str | None:
    """Why `value` is not a usable AE title (1-16 printable ASCII characters, no backslash), or None."""
    if value is None or not value.strip():
        return "is required"
    if len(value) > MAX_AE_TITLE_LENGTH:
        return f"is longer than {MAX_AE_TITLE_LENGTH} characters"
    if any(not (32 <= ord(c) < 127) or c == "\\" for c in value):
        return "may hold only printable ASCII characters other than backslash"
    return None


def host_problem(value: str | None) -> str | None:
    """Why `value` is neither an IP address nor a DNS host name, or None."""
    if value is None or not value.strip():
        return "is required"
    if len(value) > MAX_HOST_LENGTH:
        return f"is longer than {MAX_HOST_LENGTH} characters"
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        return "is not an IP address or host name"
    return None


def port_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be a whole number"
    if not 1 <= value <= 65535:
        return "must be between 1 and 65535"
    return None


def node_problems(*, name: str | None, ae_title: str | None, host: str | None, port: object) -> dict[str, str]:
    """Field -> problem for a node's identity; empty when all is well."""
    found = {
        "name": name_problem(name),
        "ae_title": ae_title_problem(ae_title),
        "host": host_problem(host),
        "port": port_problem(port),
    }
    return {field: problem for field, problem in found.items() if problem}


def retry_delay(attempt: int) -> int:
    """Seconds before retry `attempt` (1-based) of a transfer whose node did not answer: 10 s doubling, at most
    10 minutes."""
    return min(600, 10 * 2 ** max(0, attempt - 1))
