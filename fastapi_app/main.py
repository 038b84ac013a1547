"""The FastAPI app: create_app() wires settings, the lifespan (asyncpg pool, Redis client), CORS, routers and
error handlers. `uvicorn fastapi_app.main:app` serves it; a configuration problem exits with one line.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import redis.asyncio as redis
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from fastapi_app.deps import study_access
from fastapi_app.errors import errors_install
from fastapi_app.routers import analyses, dicomweb, docs, exports, health, nodes, studies, users, ws
from fastapi_app.settings import ConfigError, Settings, get_settings

logger = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


async def _connection_keep(connection: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default sends `RESET ALL; UNLISTEN *; CLOSE ALL; advisory unlock`,
    a second round trip for every query; sql.py leaves no session state behind (no SET, LISTEN or advisory locks),
    and asyncpg still rolls back a transaction left open before calling this."""


async def _pool_open(settings: Settings) -> asyncpg.Pool:
    # Optional filters in sql.py are `($n IS NULL OR ...)`: custom plans let PostgreSQL use the indexes.
    options = {
        "dsn": settings.database_url,
        "max_size": settings.db_pool_max_size,
        "command_timeout": 30,
        "timeout": 5,  # connect timeout: a black-holed database must not stall start-up for a minute
        "server_settings": {"application_name": "noctis-fastapi", "plan_cache_mode": "force_custom_plan"},
        "reset": _connection_keep,
    }
    try:
        return await asyncpg.create_pool(min_size=1, **options)  # type: ignore[arg-type]
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Start anyway: /health says "degraded" and the pool connects once PostgreSQL answers.
        logger.error("PostgreSQL does not answer at start-up (%r); connecting lazily", exc)
        return await asyncpg.create_pool(min_size=0, **options)  # type: ignore[arg-type]


_frozen: list[bool] = []


def _startup_objects_freeze() -> None:
    """The ~100k objects of the imports (pydicom's dictionaries, pydantic schemas...) never die; moved out of the
    collector's sight, a full collection takes well under a millisecond instead of ~50 ms. Without this, the dicts
    of a page of search results, promoted while alive, set one off every few dozen pages: the p99 of the searches.
    Once per process (tests start many apps in one), after a collection so that no garbage is frozen with them."""
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen.append(True)


def _lifespan(settings: Settings):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await _pool_open(settings)
        # Redis is connected lazily by redis-py, so a Redis that is down does not stop start-up.
        app.state.redis = redis.from_url(
            settings.redis_url,
            socket_connect_timeout=2,
            health_check_interval=30,
            client_name=f"noctis-fastapi-{os.getpid()}",
        )
        _startup_objects_freeze()
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.pool.close()

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; `settings` replaces the environment's (tests point it at their database)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="NoctisPro API",
        version="1",
        description="Studies, series and instances of the NoctisPro archive, and the /ws event relay.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # routers/docs.py serves the reference without a CDN
        redoc_url=None,
        lifespan=_lifespan(settings),
    )
    app.state.settings = settings  # deps.SettingsDep
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "OPTIONS"],
            # An external DICOMweb viewer sends Range / If-None-Match and reads ETag, Warning, Content-Range.
            allow_headers=["Authorization", "Content-Type", "Accept", "Range", "If-None-Match"],
            expose_headers=["ETag", "Warning", "Content-Range", "Content-Length"],
        )
    errors_install(app)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(users.router, prefix=API_PREFIX)
    app.include_router(analyses.router, prefix=API_PREFIX)
    # Roles and facilities (noctis_pro.contracts) on every study route: deps.study_access.
    app.include_router(studies.router, prefix=API_PREFIX, dependencies=[Depends(study_access)])
    app.include_router(dicomweb.router, prefix=API_PREFIX, dependencies=[Depends(study_access)])
    app.include_router(exports.router, prefix=API_PREFIX)
    app.include_router(nodes.router, prefix=API_PREFIX)
    app.include_router(ws.router)
    app.include_router(docs.docs_router(prefix=API_PREFIX, openapi_url=app.openapi_url or "", title=app.title))
    return app


try:
    app = create_app()
except ConfigError as exc:  # one clear line instead of a traceback
    sys.exit(str(exc))
