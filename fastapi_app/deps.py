"""Dependencies as Annotated aliases: PoolDep, RedisDep, SettingsDep, CurrentUser.

They take an HTTPConnection, so the same aliases serve HTTP routes and the WebSocket.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
import redis.asyncio as redis
from fastapi import Depends
from starlette.requests import HTTPConnection

from fastapi_app import auth
from fastapi_app.errors import NotAuthenticatedError
from fastapi_app.settings import Settings, get_settings


def _pool(conn: HTTPConnection) -> asyncpg.Pool:
    return conn.app.state.pool


def _redis(conn: HTTPConnection) -> redis.Redis:
    return conn.app.state.redis


PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
RedisDep = Annotated[redis.Redis, Depends(_redis)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


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
    """The client as Django's audit sees it: behind nginx, the first X-Forwarded-For entry."""
    forwarded = conn.headers.get("x-forwarded-for", "")
    if forwarded:
        return forwarded.split(",")[0].strip()[:64]
    return conn.client.host[:64] if conn.client else ""
