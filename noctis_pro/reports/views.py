"""The report pages: read or write a study's report, autosave its draft (JSON), sign it, add addenda, download
it as PDF. Roles decide who may (contracts.roles), facilities which studies (pacs.selectors.study_detail)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from noctis_pro.accounts.roles import role_required, user_can
from noctis_pro.contracts import roles
from noctis_pro.contracts.uids import uid_is_valid
from noctis_pro.core.audit import audit_record
from noctis_pro.core.exceptions import NoctisError
from noctis_pro.pacs.models import Study
from noctis_pro.pacs.selectors import study_detail
from noctis_pro.reports import services
from noctis_pro.reports.pdf import report_pdf


def _study(request: HttpRequest, study_uid: str) -> Study:
    study = study_detail(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if study is None:
        raise Http404("no such study")
    return study


@role_required(roles.REPORT_VIEW)
@require_http_methods(["GET", "POST"])
def report(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = _study(request, study_uid)
    if request.method == "POST":
        return _form_post(request, study)
    found = services.report_for_study(study_id=study.pk)
    can_write = user_can(request.user, roles.REPORT_WRITE) and not (found and found.is_final)
    if not services.report_visible_to(found, request.user) and not can_write:
        raise Http404("no signed report for this study yet")
    audit_record(request_or_user=request, action="report.view", object_type="study", object_id=study_uid)
    context = {
        "study": study,
        "report": found,
        "can_write": can_write,
        "can_sign": user_can(request.user, roles.REPORT_SIGN),
        "templates": services.templates_for_study(study=study) if can_write else [],
    }
    return render(request, "reports/report.html", context)


def _form_post(request: HttpRequest, study: Study) -> HttpResponse:
    action = request.POST.get("action", "save")
    findings, impression = request.POST.get("findings", ""), request.POST.get("impression", "")
    try:
        if action in {"sign", "finalize"}:
            services.report_sign(study=study, request=request, findings=findings, impression=impression)
            messages.success(request, "Report signed.")
        else:
            services.report_draft_save(
                study=study,
                request=request,
                findings=findings,
                impression=impression,
                preliminary=action == "preliminary",
            )
            messages.success(request, "Preliminary report saved." if action == "preliminary" else "Draft saved.")
    except services.ReportPermissionError:
        raise
    except NoctisError as exc:
        messages.error(request, exc.message)
    return redirect("reports:report", study_uid=study.study_instance_uid)


@role_required(roles.REPORT_WRITE)
@require_POST
def draft(request: HttpRequest, study_uid: str) -> JsonResponse:
    """Autosave: {"findings", "impression"} as JSON or form fields -> {"saved_at"}; 409 once signed."""
    study = _study(request, study_uid)
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "the body is not JSON"}, status=400)
        if not isinstance(data, dict):
            return JsonResponse({"error": "the body must be a JSON object"}, status=400)
    else:
        data = request.POST
    findings, impression = data.get("findings", ""), data.get("impression", "")
    if not isinstance(findings, str) or not isinstance(impression, str):
        return JsonResponse({"error": "findings and impression must be text"}, status=400)
    saved = services.report_draft_save(study=study, request=request, findings=findings, impression=impression)
    return JsonResponse({"saved_at": saved.updated_at.isoformat(), "status": saved.status})


@role_required(roles.REPORT_SIGN)
@require_POST
def addendum(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = _study(request, study_uid)
    try:
        services.addendum_add(study=study, request=request, text=request.POST.get("text", ""))
        messages.success(request, "Addendum added.")
    except services.ReportPermissionError:
        raise
    except NoctisError as exc:
        messages.error(request, exc.message)
    return redirect("reports:report", study_uid=study_uid)


@role_required(roles.REPORT_VIEW)
@require_GET
def pdf(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = _study(request, study_uid)
    found = services.report_for_study(study_id=study.pk)
    if not services.report_visible_to(found, request.user):
        raise Http404("no report you may read")
    audit_record(
        request_or_user=request,
        action="report.export",
        object_type="study",
        object_id=study_uid,
        detail={"format": "pdf", "report_id": found.pk, "status": found.status},
    )
    response = HttpResponse(report_pdf(report=found), content_type="application/pdf")
    disposition = "attachment" if request.GET.get("download") else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="report-{study.accession_number or study.pk}.pdf"'
    response["Cache-Control"] = "private, no-store"
    return response
