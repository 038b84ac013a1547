"""The daily retention run (Celery beat): apply the enabled policies."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from noctis_pro.retention.services import retention_apply, retention_plan


@shared_task(ignore_result=True)
def retention_run() -> dict[str, Any]:
    result = retention_apply(retention_plan())
    return {"deleted": len(result.deleted), "skipped": len(result.skipped), "bytes_freed": result.bytes_freed}
