"""GET /api/v1/health: whether PostgreSQL and Redis answer. No authentication (load balancers call it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import asyncpg
import redis.exceptions
from fastapi import APIRouter, Response
from pydantic import BaseModel

from fastapi_app import sql
from fastapi_app.deps import PoolDep, RedisDep

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: str  # "ok" | "degraded"
    database: str  # "ok" | "error: <kind>"
    redis: str


async def _check(name: str, probe: Awaitable[object]) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await probe
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, redis.exceptions.RedisError) as exc:
        logger.warning("health: %s does not answer: %r", name, exc)
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(pool: PoolDep, redis_client: RedisDep, response: Response) -> Health:
    database, redis_state = await asyncio.gather(
        _check("database", sql.database_ping(pool)), _check("redis", redis_client.ping())
    )
    ok = database == "ok" and redis_state == "ok"
    if not ok:
        response.status_code = 503
    return Health(status="ok" if ok else "degraded", database=database, redis=redis_state)
