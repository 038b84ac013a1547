"""/ws/: relays every event Django publishes on Redis (contracts.events.CHANNEL) to signed-in browsers, unchanged.

The handshake is authenticated (Bearer header, the session cookie, or `?token=` for clients that cannot set
headers); an anonymous one is refused before it is accepted, which the server answers with HTTP 403. A live
connection first gets {"type": "hello", "user": ...}; a text "ping" (or {"type": "ping"}) gets
{"type": "pong"}. If Redis goes away the relay re-subscribes with back-off and the socket stays open.

Roles and facilities (noctis_pro.contracts): a user whose role may not view studies is refused like an anonymous
one; an event about a study (any event with "study_instance_uid") reaches only users who may see that study.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as redis
import redis.exceptions
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from fastapi_app import auth, sql
from fastapi_app.deps import PoolDep, RedisDep, SettingsDep
from fastapi_app.errors import DATABASE_UNAVAILABLE
from fastapi_app.settings import Settings
from noctis_pro.contracts import access, events, roles

logger = logging.getLogger(__name__)
router = APIRouter()

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
RESUBSCRIBE_MAX_DELAY = 5.0
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _origin_allowed(ws: WebSocket, settings: Settings) -> bool:
    """A cookie rides along on cross-site handshakes too, so a cookie login needs a same-site or listed Origin."""
    origin = ws.headers.get("origin")
    if not origin:
        return True  # not a browser
    if origin.rstrip("/") in settings.cors_allowed_origins:
        return True
    host = ws.headers.get("x-forwarded-host") or ws.headers.get("host") or ""
    return urlsplit(origin).netloc == host


async def _handshake_user(ws: WebSocket, pool: PoolDep, settings: Settings) -> auth.User | None:
    secret = settings.django_secret_key.get_secret_value()
    authorization = ws.headers.get("authorization")
    query_token = ws.query_params.get("token")
    if auth.bearer_token(authorization) or query_token:
        return await auth.authenticate(
            pool, secret=secret, authorization=authorization, session_key=None, query_token=query_token
        )
    session_key = ws.cookies.get(settings.session_cookie_name)
    if session_key and _origin_allowed(ws, settings):
        return await auth.user_from_session(pool, session_key=session_key, secret=secret)
    return None


class StudyFilter:
    """Whether an event's study is visible to the socket's user; each study's facility is looked up once per
    FACILITY_TTL seconds (a burst of events for one study costs one query)."""

    FACILITY_TTL = 10.0

    def __init__(self, pool: asyncpg.Pool, user: auth.User) -> None:
        self.pool = pool
        self.visible = user.visible_facility_ids
        self.cache: dict[str, tuple[float, bool]] = {}

    async def allows(self, text: str) -> bool:
        if self.visible is None:
            return True
        try:
            event = json.loads(text)
        except ValueError:
            return False
        uid = event.get("study_instance_uid") if isinstance(event, dict) else None
        if not isinstance(uid, str):
            return True  # not about a study (task.echo)
        now = time.monotonic()
        hit = self.cache.get(uid)
        if hit is not None and now - hit[0] < self.FACILITY_TTL:
            return hit[1]
        found = await sql.study_facility(self.pool, study_uid=uid)
        # A study no longer (or not yet) indexed has no facility and no patient data to protect: relayed.
        allowed = not found.exists or access.facility_visible(found.facility_id, self.visible)
        if len(self.cache) > 10_000:
            self.cache.clear()
        self.cache[uid] = (now, allowed)
        return allowed


async def _relay(ws: WebSocket, redis_client: redis.Redis, hello: dict[str, object], study_filter: StudyFilter) -> None:
    """Redis -> socket, forever; a lost Redis connection is re-subscribed with back-off.

    `hello` goes out after the first subscription attempt, so a client that sees it does not miss later events
    (unless Redis is down, in which case it still learns that the socket is live).
    """
    greeted = False
    delay = 0.5
    while True:
        pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        try:
            try:
                await pubsub.subscribe(events.CHANNEL)
            except REDIS_DOWN:
                if not greeted:
                    await ws.send_json(hello)
                    greeted = True
                raise
            if not greeted:
                await ws.send_json(hello)
                greeted = True
            delay = 0.5
            while True:
                message = await pubsub.get_message(timeout=30.0)
                if message is None or message.get("type") != "message":
                    continue
                data = message["data"]
                text = data.decode() if isinstance(data, bytes) else str(data)
                if await study_filter.allows(text):
                    await ws.send_text(text)
        # Only Redis errors: a socket error from ws.send_text means the client left, which ends the relay.
        except REDIS_DOWN as exc:
            logger.warning("ws relay: Redis subscription lost (%r); re-subscribing in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_DELAY)
        finally:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await pubsub.aclose()


async def _receive(ws: WebSocket) -> None:
    """Socket -> server: answers pings; returns when the client goes away."""
    while True:
        text = await ws.receive_text()
        if text.strip().lower() == "ping" or _is_ping(text):
            await ws.send_json({"type": "pong"})


def _is_ping(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "ping"


@router.websocket("/ws/")
@router.websocket("/ws")
async def events_socket(ws: WebSocket, pool: PoolDep, redis_client: RedisDep, settings: SettingsDep) -> None:
    try:
        user = await _handshake_user(ws, pool, settings)
    except DATABASE_UNAVAILABLE as exc:
        logger.error("ws: cannot authenticate, database unavailable: %r", exc)
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(JSONResponse({"detail": "database unavailable, retry later"}, 503))
        else:
            await ws.close(code=TRY_AGAIN_LATER)
        return
    if user is None:
        await ws.close(code=POLICY_VIOLATION, reason="authentication required")
        return
    if roles.STUDY_VIEW not in user.permissions:
        await ws.close(code=POLICY_VIOLATION, reason=f"your role does not allow {roles.STUDY_VIEW}")
        return
    await ws.accept()
    hello = {"type": "hello", "user": user.public()}
    relay = asyncio.create_task(
        _relay(ws, redis_client, hello, StudyFilter(pool, user)), name=f"ws-relay-{user.username}"
    )
    receive = asyncio.create_task(_receive(ws), name=f"ws-receive-{user.username}")
    try:
        done, _ = await asyncio.wait({relay, receive}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                logger.error("ws: connection of %s ended: %r", user.username, exc)
    finally:
        for task in (relay, receive):
            task.cancel()
        await asyncio.gather(relay, receive, return_exceptions=True)
