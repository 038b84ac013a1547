"""Queue Celery tasks from FastAPI by name, without importing Django: the worker runs them (noctis_pro/*/tasks.py).

send_task publishes one message on the broker; it blocks briefly, so routes call it through a thread.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import anyio
from celery import Celery

from fastapi_app.settings import Settings


@lru_cache(maxsize=4)
def _client(broker_url: str) -> Celery:
    return Celery("noctis_fastapi", broker=broker_url, set_as_current=False)


async def task_send(settings: Settings, name: str, args: list[Any]) -> None:
    client = _client(settings.celery_broker_url or settings.redis_url)
    await anyio.to_thread.run_sync(lambda: client.send_task(name, args=args))
