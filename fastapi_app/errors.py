"""The service's errors and the one place they become HTTP answers: {"detail": message}."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of the errors a router raises; `status` is the HTTP status the client gets."""

    status = 400
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(ApiError):
    status = 400


class NotAuthenticatedError(ApiError):
    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(ApiError):
    """Logged in, but the user's role does not allow this (contracts.roles)."""

    status = 403


class UnknownStudyError(ApiError):
    status = 404


class UnknownSeriesError(ApiError):
    status = 404


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in {"query", "path", "body", "header"})
        problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=400)


# PostgreSQL unreachable or restarting: the client may retry, so 503 rather than a bare 500.
DATABASE_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.error("%s %s: database unavailable: %r", request.method, request.url.path, exc)
    return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503, headers={"Retry-After": "5"})


def errors_install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, _database_unavailable)
