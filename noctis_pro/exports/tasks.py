"""Celery tasks of exports: build one (retried with back-off on I/O errors), and expire old ones (beat)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from noctis_pro.exports.services import export_build, export_failed, exports_expire

logger = logging.getLogger(__name__)

EXPORT_MAX_RETRIES = 5


@shared_task(bind=True, ignore_result=True, max_retries=EXPORT_MAX_RETRIES, acks_late=True)
def export_build_task(self: Any, export_id: str) -> dict[str, int]:
    try:
        result = export_build(export_id)
    except OSError as exc:  # disk full, storage unmounted: worth another try later
        if self.request.retries >= EXPORT_MAX_RETRIES:
            export_failed(export_id, f"gave up after {self.request.retries + 1} attempts: {exc}")
            raise
        logger.warning("export %s: %s (retry %d)", export_id, exc, self.request.retries)
        export_failed(export_id, f"attempt {self.request.retries + 1} failed, retrying: {exc}")
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc
    except Exception as exc:
        export_failed(export_id, f"{type(exc).__name__}: {exc}")
        raise
    return {"done": result.done, "skipped": result.skipped, "size_bytes": result.size_bytes}


@shared_task(ignore_result=True)
def exports_expire_task() -> int:
    return exports_expire()
