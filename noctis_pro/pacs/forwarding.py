"""Forwarding: newly indexed instances that match an enabled ForwardRule are sent to its Node with C-STORE.

Files are sent as stored (pynetdicom streams the Part-10 file; no transcoding), so only the stored transfer
syntax is proposed. Instances never go back to the AE that sent them (no loops between two archives).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from pynetdicom import AE

from noctis_pro.contracts.scu import NodeUnreachableError
from noctis_pro.pacs import dicom_values as dv
from noctis_pro.pacs.models import ForwardRule, Instance, Node, Receipt

logger = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # presentation contexts per association (PS3.8)
# Success and the C-STORE warnings (coercion, elements discarded, data set does not match SOP class).
STORE_OK = {0x0000, 0xB000, 0xB006, 0xB007}


__all__ = ["NodeUnreachableError", "SendResult", "forward_plan", "instances_send"]
PROGRESS_EVERY = 10  # instances between two progress reports


@dataclass
class SendResult:
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> why

    def as_dict(self) -> dict[str, Any]:
        return {"sent": len(self.sent), "failed": self.failed}


def forward_plan(*, receipts: list[Receipt]) -> dict[int, list[str]]:
    """Node id -> SOP Instance UIDs to send, for the enabled rules matching these receipts."""
    rules = list(
        ForwardRule.objects.filter(enabled=True, node__enabled=True, node__may_receive=True).select_related("node")
    )
    if not rules:
        return {}
    plan: dict[int, list[str]] = defaultdict(list)
    for receipt in receipts:
        modality = dv.text(receipt.attrs.get("Modality"))
        nodes = {
            rule.node_id
            for rule in rules
            if rule.matches(modality=modality, calling_ae=receipt.calling_ae)
            and rule.node.ae_title.strip() != receipt.calling_ae.strip()
        }
        for node_id in sorted(nodes):
            plan[node_id].append(receipt.sop_instance_uid)
    return dict(plan)


def instances_send(
    *, node: Node, sop_uids: list[str], progress: Callable[[SendResult], None] | None = None
) -> SendResult:
    """C-STORE the instances to `node`, one association per 128 (SOP class, transfer syntax) pairs; `progress`
    sees the running result every PROGRESS_EVERY instances."""
    result = SendResult()
    rows = list(
        Instance.objects.filter(sop_instance_uid__in=sop_uids)
        .order_by("series_id", "instance_number", "pk")
        .values_list("sop_instance_uid", "sop_class_uid", "transfer_syntax_uid", "path")
    )
    for missing in sorted(set(sop_uids) - {row[0] for row in rows}):
        result.failed[missing] = "not in the index"
    pairs = sorted({(row[1], row[2]) for row in rows})
    for start in range(0, len(pairs), MAX_CONTEXTS):
        chunk = set(pairs[start : start + MAX_CONTEXTS])
        _send_chunk(node, [row for row in rows if (row[1], row[2]) in chunk], chunk, result, progress)
    return result


def _send_chunk(
    node: Node,
    rows: list[tuple[str, str, str, str]],
    pairs: set[tuple[str, str]],
    result: SendResult,
    progress: Callable[[SendResult], None] | None,
) -> None:
    ae = AE(ae_title=settings.DICOM_AE_TITLE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class, transfer_syntax in sorted(pairs):
        ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        raise NodeUnreachableError(f"no association with {node.ae_title}@{node.host}:{node.port}")
    try:
        for done, (sop_uid, _sop_class, _ts, path) in enumerate(rows, start=1):
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(result)
            if not assoc.is_established:
                result.failed[sop_uid] = "association lost"
                continue
            try:
                status = assoc.send_c_store(settings.STORAGE_ROOT / path)
            except (OSError, ValueError) as exc:  # file gone, or no accepted context for it
                result.failed[sop_uid] = str(exc)
                continue
            code = int(status.Status) if status and "Status" in status else None
            if code in STORE_OK:
                result.sent.append(sop_uid)
            else:
                result.failed[sop_uid] = "no response" if code is None else f"status 0x{code:04X}"
    finally:
        if assoc.is_established:
            assoc.release()
