"""/api/v1/exports: ask for an anonymised export of studies, follow its progress, download the ZIP.

The ZIP is built by the Celery worker (noctis_pro.exports), which applies the facility rule again; here the
request is checked against the role (study.export) and the facilities before anything is queued.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from fastapi_app import schemas, sql
from fastapi_app.deps import CurrentUser, PoolDep, SettingsDep, permission_required, user_audit
from fastapi_app.errors import ApiError, InvalidRequestError
from fastapi_app.tasks import broker_url, task_send
from noctis_pro.contracts import exports as exports_contract
from noctis_pro.contracts import roles
from noctis_pro.contracts.uids import uid_problem

router = APIRouter(
    prefix="/exports",
    tags=["exports"],
    dependencies=[permission_required(roles.EXPORT)],
    responses={401: {"model": schemas.ErrorOut}, 403: {"model": schemas.ErrorOut}},
)


class UnknownExportError(ApiError):
    status = 404


class ExportNotReadyError(ApiError):
    status = 409


class ExportGoneError(ApiError):
    status = 410


class ExportIn(BaseModel):
    study_uids: list[str] = Field(
        min_length=1, max_length=exports_contract.MAX_STUDIES, description="Study Instance UIDs"
    )


class ExportOut(BaseModel):
    id: uuid.UUID
    status: str = Field(description="pending, running, done, failed or expired")
    study_uids: list[str]
    instances_total: int
    instances_done: int
    instances_skipped: int = Field(description="left out: burned-in annotation, unreadable files")
    size_bytes: int | None
    error: str
    created_at: dt.datetime
    expires_at: dt.datetime
    download_url: str | None


def _out(row: object, request: Request) -> ExportOut:
    r = dict(row)  # type: ignore[call-overload]
    uids = r["study_uids"]
    done = r["status"] == "done" and r["expires_at"] > dt.datetime.now(dt.UTC)
    return ExportOut(
        id=r["id"],
        status=r["status"],
        study_uids=json.loads(uids) if isinstance(uids, str) else uids,
        instances_total=r["instances_total"],
        instances_done=r["instances_done"],
        instances_skipped=r["instances_skipped"],
        size_bytes=r["size_bytes"],
        error=r["error"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        download_url=str(request.url_for("export_download", export_id=r["id"])) if done else None,
    )


async def _owned(pool: PoolDep, user: CurrentUser, export_id: uuid.UUID) -> object:
    row = await sql.export_by_id(pool, export_id=export_id)
    # Someone else's export is 404, as if it did not exist; an admin may see every export.
    if row is None or (row["requested_by_id"] != user.id and roles.ADMIN_SITE not in user.permissions):
        raise UnknownExportError(f"no export {export_id}")
    return row


@router.post("", status_code=202, response_model=ExportOut)
async def export_create(
    body: ExportIn, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> ExportOut:
    """Queue an export of these studies; 202 with its id, then poll GET /exports/{id}."""
    uids = list(dict.fromkeys(u.strip() for u in body.study_uids))
    for uid in uids:
        problem = uid_problem(uid)
        if problem is not None:
            raise InvalidRequestError(f"study_uids: {uid[:80]!r} is {problem}")
    visible = await sql.export_visible_studies(pool, study_uids=uids, facility_ids=user.visible_facility_ids)
    missing = [u for u in uids if u not in visible]
    if missing:
        raise UnknownExportError(f"no study {missing[0]}")
    row = await sql.export_insert(
        pool, export_id=uuid.uuid4(), user_id=user.id, study_uids=uids, ttl_hours=settings.export_ttl_hours
    )
    await task_send(broker_url(settings), exports_contract.BUILD_TASK, [str(row["id"])])
    await user_audit(
        pool,
        request,
        user,
        action="export.create",
        object_type="export",
        object_id=str(row["id"]),
        detail={"study_uids": uids},
    )
    return _out(row, request)


@router.get("", response_model=list[ExportOut])
async def exports_list(request: Request, pool: PoolDep, user: CurrentUser) -> list[ExportOut]:
    """The caller's recent exports, newest first."""
    return [_out(r, request) for r in await sql.exports_of_user(pool, user_id=user.id)]


@router.get("/{export_id}", response_model=ExportOut)
async def export_get(
    export_id: Annotated[uuid.UUID, PathParam()], request: Request, pool: PoolDep, user: CurrentUser
) -> ExportOut:
    return _out(await _owned(pool, user, export_id), request)


@router.get(
    "/{export_id}/download",
    name="export_download",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}},
        409: {"model": schemas.ErrorOut},
        410: {"model": schemas.ErrorOut},
    },
)
async def export_download(
    export_id: Annotated[uuid.UUID, PathParam()],
    request: Request,
    pool: PoolDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> FileResponse:
    """The ZIP, once the export is done and until it expires (410 after)."""
    row = await _owned(pool, user, export_id)
    r = dict(row)  # type: ignore[call-overload]
    if r["status"] == "expired" or r["expires_at"] <= dt.datetime.now(dt.UTC):
        raise ExportGoneError("export expired")
    if r["status"] != "done":
        raise ExportNotReadyError(f"export is {r['status']}")
    path = exports_contract.zip_path(settings.export_root, r["id"])
    if not path.is_file():
        raise ExportGoneError("export file is gone")
    await user_audit(
        pool,
        request,
        user,
        action="export.download",
        object_type="export",
        object_id=str(r["id"]),
        detail={"size_bytes": r["size_bytes"]},
    )
    return FileResponse(path, media_type="application/zip", filename=exports_contract.download_name(r["id"]))
