"""Remote DICOM nodes and transfers, for the admin role (group "admin" or a superuser; others get 403).

    GET    /nodes                       the nodes
    POST   /nodes                       register one (400 names the bad field, 409 a taken name or AE title)
    GET    /nodes/{id}  PATCH /nodes/{id}  DELETE /nodes/{id}
    POST   /nodes/{id}/echo             C-ECHO from our AE title, answered in the request
    POST   /nodes/{id}/query            remote C-FIND (Study Root, STUDY or SERIES level), answered in the request
    POST   /nodes/{id}/retrieve         queue a C-MOVE of a study/series from the node to us -> 202 + transfer
    POST   /studies/{study_uid}/send    queue a C-STORE of a study/series to a node -> 202 + transfer
    GET    /transfers  GET /transfers/{id}   progress of sends, forwards and retrieves

The DICOM work is noctis_pro.contracts.scu (the same code Django's UI and CLI run), in a worker thread. Queued
transfers are rows in pacs_transfer plus a Celery message sent by task name (contracts.nodes.TASK_TRANSFER_RUN)
to the broker; the Celery worker (noctis_pro.pacs.tasks.transfer_run) does the rest, with retries.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any, Literal

import asyncpg
from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from fastapi_app import schemas, sql
from fastapi_app.auth import User
from fastapi_app.deps import CurrentUser, PoolDep, SettingsDep, user_audit
from fastapi_app.errors import ApiError, ForbiddenError, InvalidRequestError, UnknownStudyError
from fastapi_app.tasks import broker_url, task_send
from noctis_pro.contracts import nodes as rules
from noctis_pro.contracts import roles, scu
from noctis_pro.contracts.uids import uid_problem

logger = logging.getLogger(__name__)
MAX_TRANSFERS_PAGE = 500


class UnknownNodeError(ApiError):
    status = 404


class NodeConflictError(ApiError):
    status = 409


class NodeUnavailableError(ApiError):
    status = 502  # the remote node, not this service, failed


class BrokerUnavailableError(ApiError):
    status = 503
    headers = {"Retry-After": "5"}


async def _admin(user: CurrentUser) -> User:
    if roles.ADMIN_SITE not in user.permissions:
        raise ForbiddenError("nodes and transfers are for the admin role")
    return user


AdminUser = Annotated[User, Depends(_admin)]

router = APIRouter(
    tags=["nodes"],
    responses={
        400: {"model": schemas.ErrorOut},
        401: {"model": schemas.ErrorOut},
        403: {"model": schemas.ErrorOut, "description": "not the admin role"},
    },
)


# --- models ---------------------------------------------------------------------------------------------------


class NodeIn(BaseModel):
    name: str = Field(description="unique label, e.g. 'reading-room'", max_length=rules.MAX_NAME_LENGTH)
    ae_title: str = Field(description="the node's AE title (unique)", max_length=rules.MAX_AE_TITLE_LENGTH)
    host: str = Field(description="IP address or host name", max_length=rules.MAX_HOST_LENGTH)
    port: int = Field(description="its DICOM port", ge=1, le=65535)
    enabled: bool = True
    may_store: bool = Field(True, description="may C-STORE to us")
    may_query: bool = Field(True, description="may C-FIND us")
    may_retrieve: bool = Field(True, description="may C-MOVE / C-GET from us")
    may_receive: bool = Field(True, description="may be sent to: forwards, sends, C-MOVE destination")


class NodePatch(BaseModel):
    name: str | None = Field(None, max_length=rules.MAX_NAME_LENGTH)
    ae_title: str | None = Field(None, max_length=rules.MAX_AE_TITLE_LENGTH)
    host: str | None = Field(None, max_length=rules.MAX_HOST_LENGTH)
    port: int | None = Field(None, ge=1, le=65535)
    enabled: bool | None = None
    may_store: bool | None = None
    may_query: bool | None = None
    may_retrieve: bool | None = None
    may_receive: bool | None = None


class NodeOut(schemas._FromRow):
    id: int
    name: str
    ae_title: str
    host: str
    port: int
    enabled: bool
    may_store: bool
    may_query: bool
    may_retrieve: bool
    may_receive: bool
    last_success_at: dt.datetime | None = None
    last_error: str
    created_at: dt.datetime


class EchoOut(BaseModel):
    ok: bool
    message: str
    status: int | None = Field(None, description="the C-ECHO response status (0 = success)")
    elapsed_ms: float


class QueryIn(BaseModel):
    level: Literal["STUDY", "SERIES"] = "STUDY"
    filters: dict[str, str] = Field(
        default_factory=dict,
        description="DICOM keywords to match, e.g. {'PatientName': 'DOE*', 'StudyDate': '20260101-20260131'}; "
        "SERIES level needs StudyInstanceUID",
    )
    limit: int = Field(100, ge=1, le=scu.MAX_FIND_RESULTS)


class RetrieveIn(BaseModel):
    study_uid: str
    series_uid: str = ""


class SendIn(BaseModel):
    node: int | str = Field(description="the node's id or name")
    series_uid: str = Field("", description="send only this series of the study")


class TransferOut(schemas._FromRow):
    id: int
    kind: str = Field(description="send, forward (a routing rule) or retrieve")
    status: str = Field(description="pending, running, done or failed")
    node_id: int | None
    node_name: str
    study_instance_uid: str
    series_instance_uid: str
    instances_listed: int = Field(description="forwards: the instances that arrived and matched")
    requested_by_id: int | None
    total: int | None = Field(description="instances to move, once known")
    completed: int
    failed: int
    attempts: int
    error: str
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    updated_at: dt.datetime


# --- helpers ----------------------------------------------------------------------------------------------------


async def _node(pool: asyncpg.Pool, node_id: int) -> sql.NodeRow:
    node = await sql.node_by_id(pool, node_id=node_id)
    if node is None:
        raise UnknownNodeError(f"no node {node_id}")
    return node


def _values_checked(values: sql.NodeValues) -> sql.NodeValues:
    problems = rules.node_problems(name=values.name, ae_title=values.ae_title, host=values.host, port=values.port)
    if problems:
        raise InvalidRequestError("; ".join(f"{field} {problem}" for field, problem in problems.items()))
    return sql.NodeValues(**{**values.__dict__, "name": values.name.strip(), "ae_title": values.ae_title.strip()})


def _conflict(exc: asyncpg.UniqueViolationError) -> NodeConflictError:
    which = "AE title" if "ae_title" in str(exc.constraint_name or exc) else "name"
    return NodeConflictError(f"a node with this {which} exists already")


def _uid(what: str, value: str, *, required: bool = True) -> str:
    if not value and not required:
        return ""
    if (problem := uid_problem(value)) is not None:
        raise InvalidRequestError(f"{what} {value[:80]!r} is {problem}")
    return value


async def _enqueue(pool: asyncpg.Pool, url: str, transfer: sql.TransferRow) -> None:
    try:
        await task_send(url, rules.TASK_TRANSFER_RUN, [transfer.id])
    except Exception as exc:  # kombu raises many kinds when the broker is down: the row must not stay pending
        logger.error("transfer %s: could not queue: %r", transfer.id, exc)
        await sql.transfer_enqueue_failed(pool, transfer_id=transfer.id, error=f"could not queue: {exc}")
        raise BrokerUnavailableError("the task queue does not answer, retry later") from None


# --- nodes ----------------------------------------------------------------------------------------------------


@router.get("/nodes", response_model=list[NodeOut])
async def nodes_list(pool: PoolDep, user: AdminUser) -> list[sql.NodeRow]:
    return await sql.nodes_list(pool)


@router.post("/nodes", response_model=NodeOut, status_code=201, responses={409: {"model": schemas.ErrorOut}})
async def node_create(body: NodeIn, request: Request, pool: PoolDep, user: AdminUser) -> sql.NodeRow:
    values = _values_checked(sql.NodeValues(**body.model_dump()))
    try:
        node = await sql.node_insert(pool, values)
    except asyncpg.UniqueViolationError as exc:
        raise _conflict(exc) from None
    await user_audit(pool, request, user, "node.create", "node", str(node.id), body.model_dump())
    return node


@router.get("/nodes/{node_id}", response_model=NodeOut, responses={404: {"model": schemas.ErrorOut}})
async def node_get(node_id: int, pool: PoolDep, user: AdminUser) -> sql.NodeRow:
    return await _node(pool, node_id)


@router.patch(
    "/nodes/{node_id}",
    response_model=NodeOut,
    responses={404: {"model": schemas.ErrorOut}, 409: {"model": schemas.ErrorOut}},
)
async def node_update(node_id: int, body: NodePatch, request: Request, pool: PoolDep, user: AdminUser) -> sql.NodeRow:
    """Change some of a node's fields; those left out keep their value."""
    current = await _node(pool, node_id)
    merged = {f: getattr(current, f) for f in sql.NodeValues.__dataclass_fields__}
    merged.update(body.model_dump(exclude_none=True))
    values = _values_checked(sql.NodeValues(**merged))
    try:
        node = await sql.node_update(pool, node_id=node_id, values=values)
    except asyncpg.UniqueViolationError as exc:
        raise _conflict(exc) from None
    if node is None:
        raise UnknownNodeError(f"no node {node_id}")
    await user_audit(pool, request, user, "node.update", "node", str(node_id), body.model_dump(exclude_none=True))
    return node


@router.delete("/nodes/{node_id}", status_code=204, responses={404: {"model": schemas.ErrorOut}})
async def node_delete(node_id: int, request: Request, pool: PoolDep, user: AdminUser) -> None:
    """Remove the node and its routing rules; its transfers stay, under the node's name."""
    node = await _node(pool, node_id)
    if not await sql.node_delete(pool, node_id=node_id):
        raise UnknownNodeError(f"no node {node_id}")
    await user_audit(pool, request, user, "node.delete", "node", str(node_id), {"name": node.name})


@router.post("/nodes/{node_id}/echo", response_model=EchoOut, responses={404: {"model": schemas.ErrorOut}})
async def node_echo(node_id: int, pool: PoolDep, settings: SettingsDep, user: AdminUser) -> dict[str, Any]:
    """C-ECHO the node from our AE title (DICOM_AE_TITLE). 200 either way; `ok` says whether it answered."""
    node = await _node(pool, node_id)
    peer = scu.Peer(ae_title=node.ae_title, host=node.host, port=node.port)
    result = await to_thread.run_sync(lambda: scu.echo(calling_ae=settings.dicom_ae_title, peer=peer))
    return result.as_dict()


@router.post(
    "/nodes/{node_id}/query",
    response_model=list[dict[str, str]],
    responses={404: {"model": schemas.ErrorOut}, 502: {"model": schemas.ErrorOut, "description": "node failed"}},
)
async def node_query(
    node_id: int, body: QueryIn, request: Request, pool: PoolDep, settings: SettingsDep, user: AdminUser
) -> list[dict[str, str]]:
    """Remote C-FIND (Study Root) on the node; each match as {DICOM keyword: text}. Filters use DICOM matching
    (wildcards * ?, date ranges, UID lists with backslashes); keys not given come back as return keys."""
    node = await _node(pool, node_id)
    filters = {key: value.strip() for key, value in body.filters.items() if value and value.strip()}
    try:
        scu.find_identifier(level=body.level, filters=filters)
    except scu.QueryInvalidError as exc:
        raise InvalidRequestError(str(exc)) from None
    peer = scu.Peer(ae_title=node.ae_title, host=node.host, port=node.port)

    def run() -> list[dict[str, str]]:
        return scu.find(
            calling_ae=settings.dicom_ae_title, peer=peer, level=body.level, filters=filters, limit=body.limit
        )

    try:
        matches = await to_thread.run_sync(run)
    except (scu.NodeUnreachableError, RuntimeError) as exc:
        raise NodeUnavailableError(str(exc)) from None
    await user_audit(pool, request, user, "node.query", "node", str(node_id),
                 {"level": body.level, "filters": filters, "matches": len(matches)})  # fmt: skip
    return matches


@router.post(
    "/nodes/{node_id}/retrieve",
    response_model=TransferOut,
    status_code=202,
    responses={404: {"model": schemas.ErrorOut}, 503: {"model": schemas.ErrorOut}},
)
async def node_retrieve(
    node_id: int, body: RetrieveIn, request: Request, pool: PoolDep, settings: SettingsDep, user: AdminUser
) -> sql.TransferRow:
    """Queue a C-MOVE of the study (or one series) from the node into this archive. The node must know our AE
    title (DICOM_AE_TITLE) as a destination. Follow it with GET /transfers/{id}."""
    study_uid = _uid("study_uid", body.study_uid)
    series_uid = _uid("series_uid", body.series_uid, required=False)
    node = await _node(pool, node_id)
    if not node.enabled:
        raise InvalidRequestError(f"node {node.name!r} is disabled")
    transfer = await sql.transfer_insert(
        pool, kind=rules.KIND_RETRIEVE, node=node, study_uid=study_uid, series_uid=series_uid, user_id=user.id
    )
    await user_audit(pool, request, user, "study.retrieve", "study", study_uid,
                 {"node": node.name, "series": series_uid, "transfer": transfer.id})  # fmt: skip
    await _enqueue(pool, broker_url(settings), transfer)
    return transfer


@router.post(
    "/studies/{study_uid}/send",
    response_model=TransferOut,
    status_code=202,
    responses={404: {"model": schemas.ErrorOut}, 503: {"model": schemas.ErrorOut}},
)
async def study_send(
    study_uid: str, body: SendIn, request: Request, pool: PoolDep, settings: SettingsDep, user: AdminUser
) -> sql.TransferRow:
    """Queue a C-STORE of the study (or one of its series) to a node, files as stored. Follow it with
    GET /transfers/{id}."""
    _uid("study_uid", study_uid)
    series_uid = _uid("series_uid", body.series_uid, required=False)
    nodes = await sql.nodes_list(pool)
    node = next((n for n in nodes if n.name == body.node or (isinstance(body.node, int) and n.id == body.node)), None)
    if node is None:
        raise InvalidRequestError(f"node {body.node!r} is not a known node")
    if not node.enabled or not node.may_receive:
        raise InvalidRequestError(f"node {node.name!r} is disabled or does not receive from us")
    study_found, series_found = await sql.study_series_exist(pool, study_uid=study_uid, series_uid=series_uid or None)
    if not study_found:
        raise UnknownStudyError(f"no study {study_uid}")
    if not series_found:
        raise InvalidRequestError(f"no series {series_uid} in study {study_uid}")
    transfer = await sql.transfer_insert(
        pool, kind=rules.KIND_SEND, node=node, study_uid=study_uid, series_uid=series_uid, user_id=user.id
    )
    await user_audit(pool, request, user, "study.send", "study", study_uid,
                 {"node": node.name, "series": series_uid, "transfer": transfer.id})  # fmt: skip
    await _enqueue(pool, broker_url(settings), transfer)
    return transfer


# --- transfers ------------------------------------------------------------------------------------------------


@router.get("/transfers", response_model=list[TransferOut])
async def transfers_list(
    pool: PoolDep,
    user: AdminUser,
    status: Annotated[Literal["pending", "running", "done", "failed"] | None, Query()] = None,
    kind: Annotated[Literal["send", "forward", "retrieve"] | None, Query()] = None,
    node_id: int | None = None,
    study_uid: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TRANSFERS_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[sql.TransferRow]:
    """Newest first."""
    return await sql.transfers_list(
        pool, status=status, node_id=node_id, study_uid=study_uid, kind=kind, limit=limit, offset=offset
    )


@router.get("/transfers/{transfer_id}", response_model=TransferOut, responses={404: {"model": schemas.ErrorOut}})
async def transfer_get(transfer_id: int, pool: PoolDep, user: AdminUser) -> sql.TransferRow:
    transfer = await sql.transfer_by_id(pool, transfer_id=transfer_id)
    if transfer is None:
        raise UnknownNodeError(f"no transfer {transfer_id}")
    return transfer
