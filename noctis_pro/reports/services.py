"""Writing reports: who may (contracts.roles), drafts (autosaved), signing, addenda, and the study's status that
follows them. Every change is audited; signing publishes report.signed after commit."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from noctis_pro.accounts.roles import user_can
from noctis_pro.contracts import roles
from noctis_pro.contracts.events import ReportSigned
from noctis_pro.core.audit import audit_record
from noctis_pro.core.events import publish_on_commit
from noctis_pro.core.exceptions import NoctisError
from noctis_pro.pacs.models import Study, StudyStatus
from noctis_pro.pacs.workflow import study_status_advance
from noctis_pro.reports.models import Addendum, Report, ReportTemplate

MAX_FIELD_LENGTH = 50_000


class ReportFinalError(NoctisError):
    status = 409


class ReportPermissionError(NoctisError):
    status = 403


def user_can_report(user: AbstractBaseUser | AnonymousUser) -> bool:
    return user_can(user, roles.REPORT_WRITE)


def _clean(value: str, name: str) -> str:
    value = value.replace("\r\n", "\n").strip()
    if len(value) > MAX_FIELD_LENGTH:
        raise NoctisError(f"{name} has at most {MAX_FIELD_LENGTH} characters")
    return value


def _require(user: AbstractBaseUser, permission: str, message: str) -> None:
    if not user_can(user, permission):
        raise ReportPermissionError(message)


def report_draft_save(
    *,
    study: Study,
    request: HttpRequest,
    findings: str,
    impression: str,
    preliminary: bool = False,
) -> Report:
    """Create or update the study's draft (autosave calls this too). `preliminary` marks the study "reported":
    the text is complete but not yet signed. A signed report is never changed here (409)."""
    user = request.user
    _require(user, roles.REPORT_WRITE, "your role does not write reports")
    findings, impression = _clean(findings, "findings"), _clean(impression, "impression")
    with transaction.atomic():
        report, _ = Report.objects.select_for_update().get_or_create(study=study, defaults={"author": user})
        if report.is_final:
            raise ReportFinalError("the report is signed and cannot be changed: add an addendum")
        report.findings, report.impression = findings, impression
        report.author = report.author or user
        report.save()
        study_status_advance(study=study, status=StudyStatus.REPORTED if preliminary else StudyStatus.IN_PROGRESS)
        audit_record(
            request_or_user=request,
            action="report.preliminary" if preliminary else "report.save",
            object_type="study",
            object_id=study.study_instance_uid,
            detail={"report_id": report.pk, "findings": len(findings), "impression": len(impression)},
        )
    return report


def report_sign(*, study: Study, request: HttpRequest, findings: str, impression: str) -> Report:
    """Sign the report with this text: it becomes final and immutable; the study becomes "final"."""
    user = request.user
    _require(user, roles.REPORT_SIGN, "only radiologists sign reports")
    findings, impression = _clean(findings, "findings"), _clean(impression, "impression")
    if not (findings or impression):
        raise NoctisError("an empty report cannot be signed")
    with transaction.atomic():
        report, _ = Report.objects.select_for_update().get_or_create(study=study, defaults={"author": user})
        if report.is_final:
            raise ReportFinalError("the report is already signed")
        report.findings, report.impression = findings, impression
        report.author = report.author or user
        report.status = Report.Status.FINAL
        report.finalized_by = user
        report.finalized_at = timezone.now()
        report.save()
        study_status_advance(study=study, status=StudyStatus.FINAL)
        audit_record(
            request_or_user=request,
            action="report.sign",
            object_type="study",
            object_id=study.study_instance_uid,
            detail={"report_id": report.pk},
        )
        publish_on_commit(
            ReportSigned(
                study_instance_uid=study.study_instance_uid,
                report_id=report.pk,
                signed_by=user.get_username(),
                status=StudyStatus.FINAL.value,
            )
        )
    return report


def addendum_add(*, study: Study, request: HttpRequest, text: str) -> Addendum:
    user = request.user
    _require(user, roles.REPORT_SIGN, "only radiologists add addenda")
    text = _clean(text, "the addendum")
    if not text:
        raise NoctisError("an addendum needs text")
    with transaction.atomic():
        report = Report.objects.select_for_update().filter(study=study).first()
        if report is None or not report.is_final:
            raise NoctisError("addenda are added to a signed report; edit the draft instead")
        addendum = Addendum.objects.create(report=report, text=text, author=user)
        audit_record(
            request_or_user=request,
            action="report.addendum",
            object_type="study",
            object_id=study.study_instance_uid,
            detail={"report_id": report.pk, "addendum_id": addendum.pk},
        )
    return addendum


def report_for_study(*, study_id: int) -> Report | None:
    return (
        Report.objects.select_related("author", "finalized_by")
        .prefetch_related("addenda__author")
        .filter(study_id=study_id)
        .first()
    )


def report_visible_to(report: Report | None, user: AbstractBaseUser | AnonymousUser) -> bool:
    """A signed report to whoever may read reports; a draft only to those who may read drafts."""
    if report is None or not user_can(user, roles.REPORT_VIEW):
        return False
    return report.is_final or user_can(user, roles.REPORT_VIEW_DRAFT)


def templates_for_study(*, study: Study) -> list[ReportTemplate]:
    """Enabled templates for the study's modalities first, then those for any modality."""
    modalities = study.modalities
    found = list(ReportTemplate.objects.filter(enabled=True, modality__in=[*modalities, ""]))
    return sorted(found, key=lambda t: (t.modality == "", t.name))
