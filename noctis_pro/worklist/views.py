"""The worklist: the study list with filters, one row as an HTML fragment (for live updates), thumbnails."""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from noctis_pro.accounts.roles import role_required, user_can
from noctis_pro.ai.selectors import analyses_for_study
from noctis_pro.contracts import roles
from noctis_pro.contracts.uids import uid_is_valid
from noctis_pro.core.audit import audit_record
from noctis_pro.pacs.models import StudyStatus
from noctis_pro.pacs.selectors import (
    series_thumbnail_path,
    studies_for_worklist,
    study_detail,
    study_for_worklist_row,
)
from noctis_pro.pacs.workflow import study_status_advance
from noctis_pro.reports.services import report_for_study, report_visible_to, user_can_report
from noctis_pro.worklist.forms import WorklistFilterForm

PAGE_SIZE = 50


@role_required(roles.STUDY_VIEW)
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    form = WorklistFilterForm(request.GET or None)
    filters = form.filters()
    page = Paginator(studies_for_worklist(user=request.user, filters=filters), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    audit_record(
        request_or_user=request,
        action="study.list",
        object_type="worklist",
        detail={
            "filters": {k: str(v) for k, v in (form.cleaned_data if form.is_bound else {}).items() if v},
            "page": page.number,
            "shown": len(page.object_list),
        },
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "live_insert": filters.is_empty and page.number == 1,
    }
    return render(request, "worklist/index.html", context)


@role_required(roles.STUDY_VIEW)
@require_GET
def row(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = study_for_worklist_row(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if study is None:
        raise Http404("no such study")
    return render(request, "worklist/_row.html", {"study": study})


@role_required(roles.STUDY_VIEW)
@require_GET
def thumbnail(request: HttpRequest, series_uid: str) -> FileResponse:
    relpath = series_thumbnail_path(user=request.user, series_uid=series_uid) if uid_is_valid(series_uid) else None
    full = settings.MEDIA_ROOT / relpath if relpath else None
    if full is None or not full.is_file():
        raise Http404("no thumbnail")
    response = FileResponse(full.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=60"
    return response


@role_required(roles.STUDY_VIEW)
@require_GET
def study(request: HttpRequest, study_uid: str) -> HttpResponse:
    found = study_detail(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if found is None:
        raise Http404("no such study")
    audit_record(request_or_user=request, action="study.view", object_type="study", object_id=study_uid)
    if user_can(request.user, roles.REPORT_WRITE):
        study_status_advance(study=found, status=StudyStatus.IN_PROGRESS)  # a reader opened it
    report = report_for_study(study_id=found.pk)
    context = {
        "study": found,
        "analyses": analyses_for_study(study_id=found.pk),
        "report": report,
        "report_visible": report_visible_to(report, request.user),
        "can_report": user_can_report(request.user),
    }
    return render(request, "worklist/study.html", context)
