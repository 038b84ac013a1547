"""Dependencies as Annotated aliases: PoolDep, RedisDep, SettingsDep, CurrentUser; and the access checks
(roles and facilities, noctis_pro.contracts) every study route runs: `study_access`, `permission_required`.

They take an HTTPConnection, so the same aliases serve HTTP routes and the WebSocket.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
import redis.asyncio as redis
from fastapi import Depends
from starlette.requests import HTTPConnection

from fastapi_app import auth, sql
from fastapi_app.errors import ForbiddenError, NotAuthenticatedError, UnknownSeriesError, UnknownStudyError
from fastapi_app.settings import Settings
from noctis_pro.contracts import access, roles


# async, though they do not await: FastAPI runs a plain `def` dependency in a worker thread, which costs more
# than the request's own work. Settings come from app.state (create_app) rather than dependency_overrides: with
# any override set, FastAPI re-analyses every dependency's signature on every request.
async def _pool(conn: HTTPConnection) -> asyncpg.Pool:
    return conn.app.state.pool


async def _redis(conn: HTTPConnection) -> redis.Redis:
    return conn.app.state.redis


async def _settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
RedisDep = Annotated[redis.Redis, Depends(_redis)]
SettingsDep = Annotated[Settings, Depends(_settings)]


async def _current_user(conn: HTTPConnection, pool: PoolDep, settings: SettingsDep) -> auth.User:
    user = await auth.authenticate(
        pool,
        secret=settings.django_secret_key.get_secret_value(),
        authorization=conn.headers.get("authorization"),
        session_key=conn.cookies.get(settings.session_cookie_name),
    )
    if user is None:
        raise NotAuthenticatedError("Authentication required: a Bearer API token or a signed-in session")
    return user


CurrentUser = Annotated[auth.User, Depends(_current_user)]


def remote_addr(conn: HTTPConnection) -> str:
    """The client as Django's audit sees it (core/audit.py): behind nginx ($proxy_add_x_forwarded_for) the LAST
    X-Forwarded-For entry is the address nginx saw; earlier entries come from the client and can be forged."""
    forwarded = conn.headers.get("x-forwarded-for", "")
    if forwarded:
        return forwarded.split(",")[-1].strip()[:64]
    return conn.client.host[:64] if conn.client else ""


async def user_audit(
    pool: asyncpg.Pool,
    conn: HTTPConnection,
    user: auth.User,
    action: str,
    object_type: str,
    object_id: str,
    detail: dict[str, object] | None = None,
) -> None:
    """One audit row (core_auditevent) for what `user` did through this request: who, what, from where."""
    await sql.audit_record(
        pool,
        user_id=user.id,
        username=user.username,
        action=action,
        object_type=object_type,
        object_id=object_id,
        remote_addr=remote_addr(conn),
        detail=detail,
    )


def permission_required(permission: str):  # type: ignore[no-untyped-def]
    """A dependency: 403 unless the user's roles (contracts.roles) allow `permission`."""
    assert permission in roles.PERMISSIONS, permission

    async def check(user: CurrentUser) -> auth.User:
        _permission_check(user, permission)
        return user

    return Depends(check)


# Path parameters that name a study or a series, across the REST and DICOMweb routers.
_STUDY_PARAMS = ("study", "study_uid")
_SERIES_PARAMS = ("series_uid",)


async def study_access(conn: HTTPConnection, user: CurrentUser, pool: PoolDep) -> None:
    """Mounted on every study router (main.py): the role may read (GET) or store (POST), and a study or series
    named in the path is in the user's facilities (contracts.access); one outside is 404, as if it did not exist,
    so its existence does not leak. Searches apply the same rule in their SQL."""
    method = conn.scope.get("method", "GET")
    _permission_check(user, roles.STUDY_VIEW if method in {"GET", "HEAD", "OPTIONS"} else roles.STUDY_STORE)
    await _facilities_check(conn, user, pool)


async def study_view_access(conn: HTTPConnection, user: CurrentUser, pool: PoolDep) -> None:
    """study_access for routes whose POST uploads no images (asking for an analysis): study.view for every method."""
    _permission_check(user, roles.STUDY_VIEW)
    await _facilities_check(conn, user, pool)


def _permission_check(user: auth.User, permission: str) -> None:
    if permission not in user.permissions:
        raise ForbiddenError(f"your role does not allow {permission}")


async def _facilities_check(conn: HTTPConnection, user: auth.User, pool: asyncpg.Pool) -> None:
    visible = user.visible_facility_ids
    if visible is None:
        return
    params = conn.path_params
    for name in _STUDY_PARAMS:
        if name in params:
            found = await sql.study_facility(pool, study_uid=str(params[name]))
            if found.exists and not access.facility_visible(found.facility_id, visible):
                raise UnknownStudyError(f"no study {params[name]}")
    for name in _SERIES_PARAMS:
        if name in params:
            found = await sql.series_facility(pool, series_uid=str(params[name]))
            if found.exists and not access.facility_visible(found.facility_id, visible):
                raise UnknownSeriesError(f"no series {params[name]}")
