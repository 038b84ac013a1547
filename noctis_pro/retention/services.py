"""Retention: what the policies would delete (the dry run), and deleting exactly that, files and index together.

Order of deletion, per study: the index rows (study, series, instances, receipts, and the patient when it has
no study left) in one transaction, then the files. A crash between the two leaves files nobody points to (found
and removed by the next run's sweep of empty folders, harmless meanwhile), never an index entry without its
file. Studies with a report are kept unless the policy says otherwise: reports usually outlive images.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from noctis_pro.core.audit import audit_record
from noctis_pro.pacs.models import Instance, Patient, Receipt, Study
from noctis_pro.retention.models import RetentionPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedDeletion:
    study_uid: str
    policy: str
    study_date: str
    received_at: str
    modalities: str
    instances: int
    size_bytes: int


@dataclass
class RetentionResult:
    deleted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # study uid -> why it was not deleted
    files_removed: int = 0
    bytes_freed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _modality_q(modality: str) -> Q:
    # modalities_in_study is "CT\\MR": match the whole code, not a prefix of another one.
    m = modality.upper()
    sep = "\\"
    return (
        Q(modalities_in_study=m)
        | Q(modalities_in_study__startswith=m + sep)
        | Q(modalities_in_study__endswith=sep + m)
        | Q(modalities_in_study__contains=sep + m + sep)
    )


def policy_studies(policy: RetentionPolicy, *, now: dt.datetime) -> QuerySet[Study]:
    cutoff = now - dt.timedelta(days=policy.older_than_days)
    if policy.date_basis == RetentionPolicy.DateBasis.STUDY_DATE:
        # A study without a date is never old by its date: it is kept (a human decides).
        qs = Study.objects.filter(study_date__lt=cutoff.date())
    else:
        qs = Study.objects.filter(received_at__lt=cutoff)
    if policy.modality:
        qs = qs.filter(_modality_q(policy.modality))
    if not policy.delete_reported:
        qs = qs.filter(report__isnull=True)
    return qs


def retention_plan(
    *, now: dt.datetime | None = None, policies: list[RetentionPolicy] | None = None
) -> list[PlannedDeletion]:
    """The dry run: every study the given (default: enabled) policies would delete now, once, oldest first."""
    now = now or timezone.now()
    if policies is None:
        policies = list(RetentionPolicy.objects.filter(enabled=True).order_by("pk"))
    planned: dict[str, PlannedDeletion] = {}
    for policy in policies:
        rows = (
            policy_studies(policy, now=now)
            .annotate(bytes=Sum("series__instances__size_bytes"))
            .order_by("study_date", "received_at")
            .values_list(
                "study_instance_uid", "study_date", "received_at", "modalities_in_study", "number_of_instances", "bytes"
            )
        )
        for uid, study_date, received_at, modalities, count, size in rows:
            planned.setdefault(
                uid,
                PlannedDeletion(
                    study_uid=uid,
                    policy=policy.name,
                    study_date=study_date.isoformat() if study_date else "",
                    received_at=received_at.isoformat(),
                    modalities=modalities,
                    instances=count,
                    size_bytes=int(size or 0),
                ),
            )
    return list(planned.values())


def retention_apply(plan: list[PlannedDeletion], *, actor: Any = None) -> RetentionResult:
    """Delete the planned studies, each in its own transaction, and audit each deletion.

    A study that changed since the plan was made (new images arrived, a report was written) is re-checked against
    its policy and skipped when it no longer matches, so what is deleted is never more than the dry run showed."""
    result = RetentionResult()
    policies = {p.name: p for p in RetentionPolicy.objects.all()}
    now = timezone.now()
    for item in plan:
        policy = policies.get(item.policy)
        if policy is None:
            result.skipped[item.study_uid] = "policy removed"
            continue
        paths = _study_delete(item, policy=policy, now=now, result=result)
        if paths is None:
            continue
        removed, freed = _files_remove(paths)
        result.files_removed += removed
        result.bytes_freed += freed
        result.deleted.append(item.study_uid)
        audit_record(
            request_or_user=actor,
            action="retention.delete",
            object_type="study",
            object_id=item.study_uid,
            detail={"policy": policy.name, "instances": len(paths), "bytes": freed, "files_removed": removed},
        )
    logger.info("retention: %d studies deleted, %d skipped", len(result.deleted), len(result.skipped))
    return result


def _study_delete(
    item: PlannedDeletion, *, policy: RetentionPolicy, now: dt.datetime, result: RetentionResult
) -> list[str] | None:
    with transaction.atomic():
        locked = policy_studies(policy, now=now).select_for_update(of=("self",))
        study = locked.filter(study_instance_uid=item.study_uid).first()
        if study is None:
            result.skipped[item.study_uid] = "no longer matches its policy"
            return None
        if study.number_of_instances != item.instances:
            result.skipped[item.study_uid] = "changed since the dry run"
            return None
        instances = Instance.objects.filter(series__study=study)
        paths = list(instances.values_list("path", flat=True))
        series_uids = list(study.series.values_list("series_instance_uid", flat=True))
        patient_id = study.patient_id
        Receipt.objects.filter(study_instance_uid=study.study_instance_uid).delete()
        study.delete()  # cascades: series, instances, analyses, report when the policy allows it
        if not Study.objects.filter(patient_id=patient_id).exists():
            Patient.objects.filter(pk=patient_id).delete()
    for series_uid in series_uids:
        (Path(settings.MEDIA_ROOT) / "thumbnails" / f"{series_uid}.png").unlink(missing_ok=True)
    return paths


def _files_remove(paths: list[str]) -> tuple[int, int]:
    root = Path(settings.STORAGE_ROOT)
    removed = freed = 0
    folders: set[Path] = set()
    for relpath in paths:
        path = root / relpath
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.error("retention: cannot remove %s: %s", path, exc)
            continue
        removed += 1
        freed += size
        folders.update(p for p in (path.parent, path.parent.parent) if root in p.parents)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):  # series folders before study folders
        with contextlib.suppress(OSError):  # not empty (other series, files arriving) or already gone
            folder.rmdir()
    return removed, freed
