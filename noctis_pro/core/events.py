"""Publish contracts.events on Redis after the surrounding transaction commits (never for a rollback).

FastAPI's /ws relays what arrives on contracts.events.CHANNEL to browsers, unchanged.
"""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings
from django.db import transaction

from noctis_pro.contracts.events import CHANNEL, Event

logger = logging.getLogger(__name__)

_client: redis.Redis | None = None
_client_url: str | None = None
_lock = threading.Lock()


def redis_client() -> redis.Redis:
    """One lazily created client per process (redis-py pools connections); recreated if REDIS_URL changes."""
    global _client, _client_url
    url = settings.REDIS_URL
    with _lock:
        if _client is None or _client_url != url:
            _client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
            _client_url = url
        return _client


def publish_now(event: Event) -> None:
    """Publish immediately. A Redis outage is logged, not raised: the data is committed, only liveness suffers."""
    try:
        redis_client().publish(CHANNEL, event.to_json())
    except redis.RedisError:
        logger.exception("could not publish %s event", event.type)


def publish_on_commit(event: Event) -> None:
    """Publish `event` once the current transaction commits (immediately in autocommit mode)."""
    transaction.on_commit(lambda: publish_now(event))
