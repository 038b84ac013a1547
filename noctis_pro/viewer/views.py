"""The viewer page: one study, opened by a user whose role may view studies, audited as a study view.

The page only hands the bundle where to read (the DICOMweb root, the study UID); the images, metadata and
thumbnails come from FastAPI's /api/v1/dicomweb over the same origin, authenticated by the session cookie.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from noctis_pro.accounts.roles import role_required
from noctis_pro.contracts import roles
from noctis_pro.contracts.uids import uid_is_valid
from noctis_pro.core.audit import audit_record
from noctis_pro.pacs.selectors import study_detail
from noctis_pro.viewer.bundle import bundle_current

DICOMWEB_ROOT = "/api/v1/dicomweb"


@role_required(roles.STUDY_VIEW)  # facilities: study_detail shows only the user's studies
@require_GET
def study_view(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = study_detail(user=request.user, study_uid=study_uid) if uid_is_valid(study_uid) else None
    if study is None:
        raise Http404("no such study")
    audit_record(
        request_or_user=request,
        action="study.view",
        object_type="study",
        object_id=study_uid,
        detail={"via": "viewer"},
    )
    config = {
        "dicomwebRoot": DICOMWEB_ROOT,
        "studyUid": study.study_instance_uid,
        # The series panel comes with the page, so the first series' metadata can be fetched before the bundle runs.
        "series": [
            {
                "uid": series.series_instance_uid,
                "number": series.series_number,
                "modality": series.modality,
                "description": series.series_description,
                "count": series.number_of_instances,
            }
            for series in study.series_list
        ],
        "studyUrl": reverse("worklist:study", args=[study.study_instance_uid]),
        "worklistUrl": reverse("worklist:index"),
    }
    context = {"study": study, "viewer_config": config, "bundle": bundle_current()}
    return render(request, "viewer/study.html", context)
