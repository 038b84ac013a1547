"""Study workflow writes: facility, reading status, priority and assignee. Feature apps change these through
these functions, never through pacs.models directly. Each change publishes study.updated after commit, so open
worklists redraw the row."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q

from noctis_pro.contracts.events import StudyUpdated
from noctis_pro.core.events import publish_on_commit
from noctis_pro.pacs.models import Study, StudyPriority, StudyStatus

# A status only moves forward (a radiologist opening a final study does not make it "in progress" again).
STATUS_ORDER = [StudyStatus.UNREAD, StudyStatus.IN_PROGRESS, StudyStatus.REPORTED, StudyStatus.FINAL]


def studies_facility_set(*, facility: Any, study_ids: set[int] | None = None, calling_ae: str | None = None) -> int:
    """Set the facility of the unassigned studies among `study_ids` or sent by `calling_ae`."""
    qs = Study.objects.filter(facility__isnull=True)
    if study_ids is not None:
        qs = qs.filter(pk__in=study_ids)
    if calling_ae is not None:
        qs = qs.filter(calling_ae=calling_ae)
    return qs.update(facility=facility)


def _published(study: Study) -> None:
    publish_on_commit(
        StudyUpdated(
            study_instance_uid=study.study_instance_uid,
            number_of_series=study.number_of_series,
            number_of_instances=study.number_of_instances,
            modalities=study.modalities,
        )
    )


def study_status_advance(*, study: Study, status: str) -> bool:
    """Move the study's status forward to `status` (never back). Returns whether it changed."""
    target = StudyStatus(status)
    earlier = [s for s in STATUS_ORDER[: STATUS_ORDER.index(target)]]
    with transaction.atomic():
        changed = Study.objects.filter(Q(pk=study.pk) & Q(status__in=earlier)).update(status=target)
        if changed:
            study.status = target
            _published(study)
    return bool(changed)


def study_priority_set(*, study: Study, priority: str) -> None:
    study.priority = StudyPriority(priority)
    with transaction.atomic():
        Study.objects.filter(pk=study.pk).update(priority=study.priority)
        _published(study)


def study_assign(*, study: Study, user: AbstractBaseUser | None) -> None:
    with transaction.atomic():
        Study.objects.filter(pk=study.pk).update(assigned_to=user)
        study.assigned_to = user
        _published(study)
