"""Queue Celery tasks from FastAPI by name, without importing Django: the worker runs them (noctis_pro/*/tasks.py).

send_task publishes one message on the broker; it blocks briefly, so routes call it through a thread. Celery is
imported on first use: kombu imports the django package when it is installed, and the app must not load it at
start (tests/integration/api/test_main.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import anyio

from fastapi_app.settings import Settings

if TYPE_CHECKING:
    from celery import Celery


def broker_url(settings: Settings) -> str:
    return settings.celery_broker_url or settings.redis_url


@lru_cache(maxsize=4)
def _client(url: str) -> Celery:
    from celery import Celery

    # Only sends: no task code and no Django here, messages name the task.
    return Celery("noctis_fastapi", broker=url, set_as_current=False)


async def task_send(url: str, name: str, args: list[Any]) -> None:
    """Publish the task; raises what kombu raises when the broker does not answer."""
    client = _client(url)
    await anyio.to_thread.run_sync(lambda: client.send_task(name, args=args))
