"""GET /health/: does this process reach its database and Redis? 200 when both answer, 503 otherwise."""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        logger.warning("health: database does not answer", exc_info=True)
        return False


def _redis_ok() -> bool:
    # A fresh short-timeout client: the health check must not hang on, or be hidden by, a pooled connection.
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        logger.warning("health: redis does not answer")
        return False
    finally:
        client.close()


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    database = _database_ok()
    redis_up = _redis_ok()
    ok = database and redis_up
    body = {
        "status": "ok" if ok else "unavailable",
        "database": "ok" if database else "down",
        "redis": "ok" if redis_up else "down",
    }
    return JsonResponse(body, status=200 if ok else 503)
