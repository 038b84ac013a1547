"""What Django (noctis_pro.exports) and FastAPI (routers/exports.py) agree on about anonymised exports.
Pure Python, no Django import."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

MAX_STUDIES = 200  # per export
BUILD_TASK = "noctis_pro.exports.tasks.export_build_task"  # the Celery task, queued by name from FastAPI


def zip_path(root: Path, export_id: UUID | str) -> Path:
    """Where a finished export's ZIP lies under EXPORT_ROOT (written as <id>.zip.part, then renamed)."""
    return Path(root) / f"{export_id}.zip"


def partial_path(root: Path, export_id: UUID | str) -> Path:
    return Path(root) / f"{export_id}.zip.part"


def download_name(export_id: UUID | str) -> str:
    return f"noctis-export-{export_id}.zip"
