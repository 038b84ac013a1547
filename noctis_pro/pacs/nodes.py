"""Remote DICOM nodes: who may manage them, creating/changing/removing them, C-ECHO, remote C-FIND, and queuing
sends and retrieves as Transfers. The UI (pacs.node_views), the CLI (manage.py dicom_node) and Celery use these;
FastAPI (fastapi_app/routers/nodes.py) does the same through its SQL and noctis_pro.contracts.scu.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction

from noctis_pro.accounts.roles import user_can
from noctis_pro.contracts import nodes as rules
from noctis_pro.contracts import roles, scu
from noctis_pro.contracts.uids import uid_problem
from noctis_pro.core.audit import audit_record
from noctis_pro.core.exceptions import NoctisError
from noctis_pro.pacs.models import ForwardRule, Instance, Node, Series, Study, Transfer

CAPABILITIES = ("may_store", "may_query", "may_retrieve", "may_receive")


class NodeInvalidError(NoctisError):
    status = 400


class NodeConflictError(NoctisError):
    status = 409


class NodePermissionError(NoctisError):
    status = 403


class UnknownNodeError(NoctisError):
    status = 404


def user_may_manage_nodes(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Nodes, rules, transfers and remote queries are for the admin role (contracts.roles.ADMIN_SITE)."""
    return user_can(user, roles.ADMIN_SITE)


@dataclass(frozen=True)
class NodeFields:
    name: str
    ae_title: str
    host: str
    port: int
    enabled: bool = True
    may_store: bool = True
    may_query: bool = True
    may_retrieve: bool = True
    may_receive: bool = True

    def problems(self) -> dict[str, str]:
        return rules.node_problems(name=self.name, ae_title=self.ae_title, host=self.host, port=self.port)


def _clean(fields: NodeFields) -> NodeFields:
    problems = fields.problems()
    if problems:
        raise NodeInvalidError("; ".join(f"{field} {problem}" for field, problem in problems.items()))
    return NodeFields(**{**fields.__dict__, "name": fields.name.strip(), "ae_title": fields.ae_title.strip()})


def _conflict(fields: NodeFields, exclude: int | None) -> None:
    others = Node.objects.exclude(pk=exclude) if exclude else Node.objects.all()
    if others.filter(name=fields.name).exists():
        raise NodeConflictError(f"a node named {fields.name!r} exists already")
    if others.filter(ae_title=fields.ae_title).exists():
        raise NodeConflictError(f"a node with AE title {fields.ae_title!r} exists already")


def node_create(*, fields: NodeFields, user: AbstractBaseUser | None = None) -> Node:
    fields = _clean(fields)
    with transaction.atomic():
        _conflict(fields, None)
        try:
            node = Node.objects.create(**fields.__dict__)
        except IntegrityError as exc:  # a concurrent create with the same name or AE title
            raise NodeConflictError(f"a node with this name or AE title exists already ({exc})") from None
        if user is not None:
            audit_record(
                request_or_user=user, action="node.create", object_type="node", object_id=str(node.pk),
                detail=_node_detail(node),
            )  # fmt: skip
    return node


def node_update(*, node: Node, fields: NodeFields, user: AbstractBaseUser | None = None) -> Node:
    fields = _clean(fields)
    with transaction.atomic():
        _conflict(fields, node.pk)
        for key, value in fields.__dict__.items():
            setattr(node, key, value)
        node.save()
        if user is not None:
            audit_record(
                request_or_user=user, action="node.update", object_type="node", object_id=str(node.pk),
                detail=_node_detail(node),
            )  # fmt: skip
    return node


def node_delete(*, node: Node, user: AbstractBaseUser | None = None) -> None:
    """Remove the node and its routing rules; its transfers stay, under the node's name."""
    with transaction.atomic():
        detail = _node_detail(node)
        node_id = node.pk
        node.delete()
        if user is not None:
            audit_record(
                request_or_user=user, action="node.delete", object_type="node", object_id=str(node_id), detail=detail
            )


def _node_detail(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "ae_title": node.ae_title,
        "host": node.host,
        "port": node.port,
        "enabled": node.enabled,
        "capabilities": node.capabilities,
    }


def node_get(*, name_or_id: str | int) -> Node:
    node = (
        Node.objects.filter(pk=name_or_id).first() if isinstance(name_or_id, int) or str(name_or_id).isdigit() else None
    ) or Node.objects.filter(name=str(name_or_id)).first()
    if node is None:
        raise UnknownNodeError(f"no node {name_or_id!r}")
    return node


def peer_of(node: Node) -> scu.Peer:
    return scu.Peer(ae_title=node.ae_title, host=node.host, port=node.port)


def node_echo(*, node: Node, timeout: float = scu.ECHO_TIMEOUT_SECONDS) -> scu.EchoResult:
    """C-ECHO the node from our AE title; the result (never an exception) says whether it answered."""
    return scu.echo(calling_ae=settings.DICOM_AE_TITLE, peer=peer_of(node), timeout=timeout)


def node_find(*, node: Node, level: str, filters: dict[str, str], limit: int = scu.MAX_FIND_RESULTS) -> list[dict]:
    """Remote C-FIND (Study Root) on the node. NodeInvalidError for a bad query, NoctisError when the node fails."""
    cleaned = {key: value.strip() for key, value in filters.items() if value and value.strip()}
    try:
        return scu.find(
            calling_ae=settings.DICOM_AE_TITLE, peer=peer_of(node), level=level, filters=cleaned, limit=limit
        )
    except scu.QueryInvalidError as exc:
        raise NodeInvalidError(str(exc)) from None
    except (scu.NodeUnreachableError, RuntimeError) as exc:
        raise NoctisError(str(exc)) from None


def rule_create(
    *, name: str, node: Node, modality: str = "", calling_ae: str = "", user: AbstractBaseUser | None = None
) -> ForwardRule:
    """A routing rule: what arrives with this modality from this calling AE (blank = any) goes to `node`."""
    name, modality, calling_ae = name.strip(), modality.strip().upper(), calling_ae.strip()
    if (problem := rules.name_problem(name)) is not None:
        raise NodeInvalidError(f"name {problem}")
    if len(modality) > 16 or any(not (c.isalnum() or c == "_") for c in modality):
        raise NodeInvalidError("modality must be a DICOM modality code such as CT or MR (letters and digits)")
    if calling_ae and (problem := rules.ae_title_problem(calling_ae)) is not None:
        raise NodeInvalidError(f"calling AE {problem}")
    if not node.may_receive:
        raise NodeInvalidError(f"node {node.name!r} does not receive from us (may_receive is off)")
    with transaction.atomic():
        rule = ForwardRule.objects.create(name=name, node=node, modality=modality, calling_ae=calling_ae)
        if user is not None:
            audit_record(
                request_or_user=user, action="rule.create", object_type="forward_rule", object_id=str(rule.pk),
                detail={"name": name, "node": node.name, "modality": modality, "calling_ae": calling_ae},
            )  # fmt: skip
    return rule


# --- transfers ----------------------------------------------------------------------------------------------


def _uids_checked(study_uid: str, series_uid: str) -> None:
    if (problem := uid_problem(study_uid)) is not None:
        raise NodeInvalidError(f"study UID {problem}")
    if series_uid and (problem := uid_problem(series_uid)) is not None:
        raise NodeInvalidError(f"series UID {problem}")


def _enqueue(transfer: Transfer) -> Transfer:
    from noctis_pro.pacs.tasks import transfer_run  # the task module imports this one

    transaction.on_commit(lambda: transfer_run.apply_async(args=[transfer.pk]))
    return transfer


def transfer_send_queue(
    *, node: Node, study_uid: str, series_uid: str = "", user: AbstractBaseUser | None = None
) -> Transfer:
    """Queue a C-STORE of a study (or one of its series) from our archive to `node`."""
    _uids_checked(study_uid, series_uid)
    if not node.enabled or not node.may_receive:
        raise NodeInvalidError(f"node {node.name!r} is disabled or does not receive from us")
    study = Study.objects.filter(study_instance_uid=study_uid).first()
    if study is None:
        raise NodeInvalidError(f"no study {study_uid} in the archive")
    if series_uid and not Series.objects.filter(series_instance_uid=series_uid, study=study).exists():
        raise NodeInvalidError(f"no series {series_uid} in study {study_uid}")
    with transaction.atomic():
        transfer = Transfer.objects.create(
            kind=Transfer.Kind.SEND, node=node, node_name=node.name, study_instance_uid=study_uid,
            series_instance_uid=series_uid, requested_by=user if user is not None and user.pk else None,
        )  # fmt: skip
        if user is not None:
            audit_record(
                request_or_user=user, action="study.send", object_type="study", object_id=study_uid,
                detail={"node": node.name, "series": series_uid, "transfer": transfer.pk},
            )  # fmt: skip
        return _enqueue(transfer)


def transfer_retrieve_queue(
    *, node: Node, study_uid: str, series_uid: str = "", user: AbstractBaseUser | None = None
) -> Transfer:
    """Queue a C-MOVE from `node` to our own AE title: the node must know us as a destination."""
    _uids_checked(study_uid, series_uid)
    if not node.enabled:
        raise NodeInvalidError(f"node {node.name!r} is disabled")
    with transaction.atomic():
        transfer = Transfer.objects.create(
            kind=Transfer.Kind.RETRIEVE, node=node, node_name=node.name, study_instance_uid=study_uid,
            series_instance_uid=series_uid, requested_by=user if user is not None and user.pk else None,
        )  # fmt: skip
        if user is not None:
            audit_record(
                request_or_user=user, action="study.retrieve", object_type="study", object_id=study_uid,
                detail={"node": node.name, "series": series_uid, "transfer": transfer.pk},
            )  # fmt: skip
        return _enqueue(transfer)


def transfer_sop_uids(*, transfer: Transfer) -> list[str]:
    """What a send or forward moves: the forward's instances, or the study's (series') instances as indexed now."""
    if transfer.kind == Transfer.Kind.FORWARD:
        return list(transfer.sop_instance_uids)
    instances = Instance.objects.filter(series__study__study_instance_uid=transfer.study_instance_uid)
    if transfer.series_instance_uid:
        instances = instances.filter(series__series_instance_uid=transfer.series_instance_uid)
    return list(instances.values_list("sop_instance_uid", flat=True))
