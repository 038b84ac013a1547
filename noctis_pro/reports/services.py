"""Writing reports: who may, and the draft -> final rule. Every change is audited."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import timezone

from noctis_pro.core.audit import audit_record
from noctis_pro.core.exceptions import NoctisError
from noctis_pro.reports.models import Report

REPORTING_GROUPS = ("radiologist", "admin")
MAX_REPORT_LENGTH = 100_000


class ReportFinalError(NoctisError):
    status = 409


class ReportPermissionError(NoctisError):
    status = 403


def user_can_report(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user.groups.filter(name__in=REPORTING_GROUPS).exists())


def report_save(*, study_id: int, user: AbstractBaseUser, text: str, finalize: bool = False) -> Report:
    """Create or update the study's draft report; `finalize` makes it final (then it never changes)."""
    if not user_can_report(user):
        raise ReportPermissionError("only radiologists write reports")
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_REPORT_LENGTH:
        raise NoctisError(f"a report has at most {MAX_REPORT_LENGTH} characters")
    if finalize and not text:
        raise NoctisError("an empty report cannot be finalized")
    with transaction.atomic():
        report, _ = Report.objects.select_for_update().get_or_create(study_id=study_id, defaults={"author": user})
        if report.is_final:
            raise ReportFinalError("the report is final and cannot be changed")
        report.text = text
        report.author = report.author or user
        if finalize:
            report.status = Report.Status.FINAL
            report.finalized_by = user
            report.finalized_at = timezone.now()
        report.save()
        audit_record(
            request_or_user=user,
            action="report.finalize" if finalize else "report.save",
            object_type="study",
            object_id=report.study.study_instance_uid,
            detail={"report_id": report.pk, "length": len(text)},
        )
    return report


def report_for_study(*, study_id: int) -> Report | None:
    return Report.objects.select_related("author", "finalized_by").filter(study_id=study_id).first()
