"""The worklist: the study list with filters, one row as an HTML fragment (for live updates), thumbnails."""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from noctis_pro.accounts.roles import role_required, user_can
from noctis_pro.ai.selectors import ai_status_for_studies, analyses_for_study
from noctis_pro.ai.services import AnalysisRequestError, analysis_request, analyzer_choices
from noctis_pro.contracts import roles
from noctis_pro.contracts.uids import uid_is_valid
from noctis_pro.core.audit import audit_record
from noctis_pro.pacs.models import Study, StudyPriority, StudyStatus
from noctis_pro.pacs.selectors import (
    series_thumbnail_path,
    studies_for_worklist,
    study_detail,
    study_for_worklist_row,
    worklist_status_counts,
)
from noctis_pro.pacs.workflow import study_assign, study_priority_set, study_status_advance
from noctis_pro.reports.services import report_for_study, report_visible_to, user_can_report
from noctis_pro.worklist.forms import WorklistFilterForm

PAGE_SIZE = 50


SORTABLE = [
    ("patient_name", "Patient name"),
    ("patient_id", "Patient ID"),
    ("study_date", "Study date"),
    ("modality", "Mod."),
    ("description", "Description"),
    ("accession", "Accession"),
    ("series", "Ser."),
    ("images", "Img."),
    ("received_at", "Received"),
    ("status", "Status"),
    ("priority", "Priority"),
    ("assigned", "Assigned"),
]


def _sort_links(request: HttpRequest, current: str) -> list[dict[str, str]]:
    """Column headers: each links to the same query sorted by it, ascending first, then descending."""
    links = []
    for key, label in SORTABLE:
        query = request.GET.copy()
        query.pop("page", None)
        query["ordering"] = f"-{key}" if current == key else key
        arrow = "▲" if current == key else "▼" if current == f"-{key}" else ""
        links.append({"key": key, "label": label, "url": "?" + query.urlencode(), "arrow": arrow})
    return links


@role_required(roles.STUDY_VIEW)
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    form = WorklistFilterForm(request.GET or None, user=request.user)
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
    _with_ai_status(list(page.object_list))
    query = request.GET.copy()
    query.pop("page", None)
    counts = worklist_status_counts(user=request.user, filters=filters)
    status_query = request.GET.copy()
    status_query.pop("page", None)
    status_links = []
    for value, label in [("", "All"), *StudyStatus.choices]:
        status_query["status"] = value
        status_links.append(
            {
                "label": label,
                "status": value,
                "count": counts[value or "all"],
                "url": "?" + status_query.urlencode(),
                "active": filters.status == value,
            }
        )
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "filter_query": query.urlencode(),
        "sort_links": _sort_links(request, filters.ordering),
        "status_links": status_links,
        "priorities": StudyPriority.choices,
        "can_assign": user_can(request.user, roles.STUDY_ASSIGN),
        "can_prioritise": user_can(request.user, roles.STUDY_PRIORITY),
        "can_view_reports": user_can(request.user, roles.REPORT_VIEW),
    }
    return render(request, "worklist/index.html", context)


def _with_ai_status(studies: list[Study]) -> None:
    """Attach each study's AI badge (`study.ai`, None when it has no analyses): one query for the whole page."""
    found = ai_status_for_studies(study_ids=[s.pk for s in studies])
    for s in studies:
        s.ai = found.get(s.pk)  # type: ignore[attr-defined]


def _row_context(request: HttpRequest, study: Study) -> dict[str, object]:
    _with_ai_status([study])
    return {
        "study": study,
        "priorities": StudyPriority.choices,
        "can_assign": user_can(request.user, roles.STUDY_ASSIGN),
        "can_prioritise": user_can(request.user, roles.STUDY_PRIORITY),
        "can_view_reports": user_can(request.user, roles.REPORT_VIEW),
    }


@role_required(roles.STUDY_VIEW)
@require_GET
def row(request: HttpRequest, study_uid: str) -> HttpResponse:
    """One row; with the page's filters in the query, 204 when the study is visible but not in that view (the
    page then drops the row), 404 when it is not visible at all."""
    study = study_for_worklist_row(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if study is None:
        raise Http404("no such study")
    filters = WorklistFilterForm(request.GET or None, user=request.user).filters()
    in_view = filters.is_empty or studies_for_worklist(user=request.user, filters=filters).filter(pk=study.pk).exists()
    if not in_view:
        return HttpResponse(status=204)
    return render(request, "worklist/_row.html", _row_context(request, study))


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next") or request.headers.get("Referer") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    return redirect(target)


@role_required(roles.STUDY_ASSIGN)
@require_POST
def assign(request: HttpRequest, study_uid: str) -> HttpResponse:
    """Take the study ("me") or give it back ("none")."""
    study = study_for_worklist_row(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if study is None:
        raise Http404("no such study")
    who = request.POST.get("to", "me")
    if who not in {"me", "none"}:
        return HttpResponse("to must be 'me' or 'none'", status=400, content_type="text/plain")
    study_assign(study=study, user=request.user if who == "me" else None)
    audit_record(
        request_or_user=request, action="study.assign", object_type="study", object_id=study_uid, detail={"to": who}
    )
    return _back(request)


@role_required(roles.STUDY_PRIORITY)
@require_POST
def priority(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = study_for_worklist_row(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if study is None:
        raise Http404("no such study")
    value = request.POST.get("priority", "")
    if value not in StudyPriority.values:
        return HttpResponse(
            f"priority must be one of {', '.join(StudyPriority.values)}", status=400, content_type="text/plain"
        )
    study_priority_set(study=study, priority=value)
    audit_record(
        request_or_user=request,
        action="study.priority",
        object_type="study",
        object_id=study_uid,
        detail={"priority": value},
    )
    return _back(request)


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
        "can_request_analysis": user_can(request.user, roles.ANALYSIS_REQUEST),
        "analyzer_choices": analyzer_choices(),
    }
    return render(request, "worklist/study.html", context)


@role_required(roles.ANALYSIS_REQUEST)
@require_POST
def analyse(request: HttpRequest, study_uid: str) -> HttpResponse:
    """Queue an analyzer for the study (or one of its series) from the study page; audited like the API's POST."""
    study = study_for_worklist_row(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if study is None:
        raise Http404("no such study")
    analyzer = request.POST.get("analyzer", "").strip()
    series_uid = request.POST.get("series_uid", "").strip() or None
    if series_uid is not None and not uid_is_valid(series_uid):
        return HttpResponse("series_uid is not a valid DICOM UID", status=400, content_type="text/plain")
    try:
        queued = analysis_request(
            study=study, analyzer=analyzer, series_uid=series_uid, requested_by=f"ui:{request.user.get_username()}"
        )
    except AnalysisRequestError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    audit_record(
        request_or_user=request,
        action="study.analysis.request",
        object_type="study",
        object_id=study_uid,
        detail={"analyzer": analyzer, "series_uid": series_uid, "queued": queued},
    )
    return redirect(f"{reverse('worklist:study', args=[study_uid])}#analyses")
