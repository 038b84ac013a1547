"""Anonymised exports: request one, build the ZIP, hand it out to its owner, expire it.

Who may export what is the archive's one visibility rule (pacs.selectors.study_detail): it is checked when the
export is requested (Django or /api/v1) and again when the worker builds it, so an export made through the API
cannot reach further than the pages can.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import secrets
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydicom.errors import InvalidDicomError

from noctis_pro.accounts.roles import user_can, user_is_admin
from noctis_pro.contracts import exports as exports_contract
from noctis_pro.contracts import roles
from noctis_pro.contracts.uids import uid_is_valid
from noctis_pro.core.exceptions import NoctisError
from noctis_pro.exports.deidentify import PROFILE_NAME, Deidentifier, burned_in_annotation
from noctis_pro.exports.models import Export
from noctis_pro.facilities.access import study_visibility_q
from noctis_pro.pacs.models import Instance, Study

logger = logging.getLogger(__name__)

MAX_STUDIES = exports_contract.MAX_STUDIES
PROGRESS_EVERY = 25  # instances between progress writes


class ExportError(NoctisError):
    """A request that cannot become an export (no studies, too many, not visible)."""


class ExportForbiddenError(NoctisError):
    status = 403


class ExportUnavailableError(NoctisError):
    """The export cannot be downloaded (unknown, not the owner's, not built, expired)."""

    status = 404


def export_root() -> Path:
    return Path(settings.EXPORT_ROOT)


def export_path(export: Export) -> Path:
    return exports_contract.zip_path(export_root(), export.id)


def export_request(*, user: Any, study_uids: list[str]) -> Export:
    """Create a pending export of the studies `user` can see and queue its build once committed."""
    if not user_can(user, roles.EXPORT):
        raise ExportForbiddenError("your role does not allow exports")
    uids = list(dict.fromkeys(u.strip() for u in study_uids if u and u.strip()))
    if not uids:
        raise ExportError("no studies to export")
    if len(uids) > MAX_STUDIES:
        raise ExportError(f"at most {MAX_STUDIES} studies per export ({len(uids)} asked)")
    bad = [u for u in uids if not uid_is_valid(u)]
    if bad:
        raise ExportError(f"not a UID: {bad[0]!r}")
    hidden = sorted(set(uids) - set(visible_study_uids(user=user, study_uids=uids)))
    if hidden:
        raise ExportError(f"no such study: {hidden[0]}")
    export = Export.objects.create(
        requested_by=user,
        study_uids=uids,
        expires_at=timezone.now() + dt.timedelta(hours=settings.EXPORT_TTL_HOURS),
    )
    export_queue(export.id)
    return export


def export_queue(export_id: Any) -> None:
    from noctis_pro.exports.tasks import export_build_task

    transaction.on_commit(lambda: export_build_task.delay(str(export_id)))


@dataclass
class BuildResult:
    done: int
    skipped: int
    size_bytes: int


def export_build(export_id: Any) -> BuildResult:
    """Write the export's ZIP (temporary file, fsync, rename) and mark it done. Raises OSError to be retried."""
    export = Export.objects.select_related("requested_by").get(pk=export_id)
    if export.status in (Export.Status.DONE, Export.Status.EXPIRED):
        return BuildResult(export.instances_done, export.instances_skipped, export.size_bytes or 0)
    visible = visible_study_uids(user=export.requested_by, study_uids=export.study_uids)
    instances = list(
        Instance.objects.filter(series__study__study_instance_uid__in=visible)
        .select_related("series__study")
        .order_by("series__study__study_instance_uid", "series__series_number", "series_id", "instance_number", "pk")
        .values_list("path", "series__study__study_instance_uid", "series__series_instance_uid")
    )
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.RUNNING,
        started_at=timezone.now(),
        attempts=export.attempts + 1,
        instances_total=len(instances),
        instances_done=0,
        instances_skipped=0,
        error="",
    )
    deid = Deidentifier(salt=secrets.token_hex(16))
    target = export_path(export)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = exports_contract.partial_path(export_root(), export.id)
    done = skipped = 0
    skipped_reasons: dict[str, int] = {}
    study_numbers: dict[str, int] = {}
    series_numbers: dict[str, int] = {}
    with open(partial, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as zf:
        for relpath, study_uid, series_uid in instances:
            reason = _instance_add(
                zf,
                deid=deid,
                source=Path(settings.STORAGE_ROOT) / relpath,
                # Names in the archive carry no identifiers: numbered folders, numbered files.
                name=(
                    f"study-{study_numbers.setdefault(study_uid, len(study_numbers) + 1):03d}/"
                    f"series-{series_numbers.setdefault(series_uid, len(series_numbers) + 1):03d}/"
                    f"{done + skipped + 1:06d}.dcm"
                ),
            )
            if reason:
                skipped += 1
                skipped_reasons[reason] = skipped_reasons.get(reason, 0) + 1
            else:
                done += 1
            if (done + skipped) % PROGRESS_EVERY == 0:
                Export.objects.filter(pk=export.pk).update(instances_done=done, instances_skipped=skipped)
        manifest = {
            "profile": PROFILE_NAME,
            "studies": len(study_numbers),
            "instances": done,
            "skipped": skipped_reasons,
            "created": timezone.now().isoformat(),
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        zf.fp.flush()  # type: ignore[union-attr]
        os.fsync(raw.fileno())
    size = partial.stat().st_size
    os.replace(partial, target)
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.DONE,
        instances_done=done,
        instances_skipped=skipped,
        size_bytes=size,
        finished_at=timezone.now(),
    )
    return BuildResult(done=done, skipped=skipped, size_bytes=size)


def _instance_add(zf: zipfile.ZipFile, *, deid: Deidentifier, source: Path, name: str) -> str:
    """Add one de-identified instance; returns why it was left out, or "" when added."""
    try:
        ds = pydicom.dcmread(source)
    except FileNotFoundError:
        return "file missing"
    except (InvalidDicomError, ValueError) as exc:
        logger.warning("export: %s unreadable: %s", source, exc)
        return "unreadable"
    if burned_in_annotation(ds):
        return "burned-in annotation"
    deid.dataset(ds)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    zf.writestr(name, buffer.getvalue())
    return ""


def export_failed(export_id: Any, error: str) -> None:
    Export.objects.filter(pk=export_id).update(status=Export.Status.FAILED, error=error[:2000])
    partial = exports_contract.partial_path(export_root(), export_id)
    partial.unlink(missing_ok=True)


def export_for_download(*, user: Any, export_id: Any) -> tuple[Export, Path]:
    """The export and its file, for its owner (or an admin) while it is done and not expired."""
    export = Export.objects.filter(pk=export_id).first()
    if export is None or not (export.requested_by_id == user.pk or user_is_admin(user)):
        raise ExportUnavailableError("no such export")
    if export.status != Export.Status.DONE or export.expires_at <= timezone.now():
        raise ExportUnavailableError(f"export is {export.status}" if export.status != "done" else "export expired")
    path = export_path(export)
    if not path.is_file():
        raise ExportUnavailableError("export file is gone")
    return export, path


def exports_for_user(user: Any, limit: int = 50) -> list[Export]:
    return list(Export.objects.filter(requested_by=user).order_by("-created_at")[:limit])


def exports_expire(now: dt.datetime | None = None) -> int:
    """Delete the files of exports past their time and mark them expired; returns how many."""
    now = now or timezone.now()
    expired = list(Export.objects.filter(expires_at__lte=now).exclude(status=Export.Status.EXPIRED))
    for export in expired:
        export_path(export).unlink(missing_ok=True)
        exports_contract.partial_path(export_root(), export.id).unlink(missing_ok=True)
    Export.objects.filter(pk__in=[e.pk for e in expired]).update(status=Export.Status.EXPIRED)
    return len(expired)


def visible_study_uids(*, user: Any, study_uids: list[str]) -> list[str]:
    """Those of `study_uids` that `user` may see (the archive's one visibility rule)."""
    return list(
        Study.objects.filter(study_visibility_q(user), study_instance_uid__in=study_uids).values_list(
            "study_instance_uid", flat=True
        )
    )
