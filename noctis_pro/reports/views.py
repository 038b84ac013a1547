"""POST /studies/<uid>/report/: save the draft or finalize it, then back to the study page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from noctis_pro.contracts.uids import uid_is_valid
from noctis_pro.core.exceptions import NoctisError
from noctis_pro.pacs.selectors import study_detail
from noctis_pro.reports.services import ReportPermissionError, report_save


@login_required
@require_POST
def save(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = study_detail(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if study is None:
        raise Http404("no such study")
    finalize = request.POST.get("action") == "finalize"
    try:
        report_save(study_id=study.pk, user=request.user, text=request.POST.get("text", ""), finalize=finalize)
    except ReportPermissionError:
        raise
    except NoctisError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Report finalized." if finalize else "Draft saved.")
    return redirect("worklist:study", study_uid=study_uid)
