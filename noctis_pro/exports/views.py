"""Exports pages: ask for one (study page, worklist selection), follow its progress, download it."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from noctis_pro.accounts.roles import role_required
from noctis_pro.contracts import roles
from noctis_pro.core.audit import audit_record
from noctis_pro.exports.services import (
    ExportError,
    export_for_download,
    export_request,
    exports_for_user,
)


@role_required(roles.EXPORT)
@require_POST
def create(request: HttpRequest) -> HttpResponse:
    study_uids = request.POST.getlist("study_uid")
    try:
        export = export_request(user=request.user, study_uids=study_uids)
    except ExportError as exc:
        messages.error(request, exc.message)
        return redirect("exports:index")
    audit_record(
        request_or_user=request,
        action="export.create",
        object_type="export",
        object_id=str(export.id),
        detail={"study_uids": export.study_uids},
    )
    messages.success(request, f"Export of {len(export.study_uids)} studies queued.")
    return redirect("exports:index")


@role_required(roles.EXPORT)
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    exports = exports_for_user(request.user)
    busy = any(e.status in ("pending", "running") for e in exports)
    return render(request, "exports/index.html", {"exports": exports, "refresh": busy})


@role_required(roles.EXPORT)
@require_GET
def download(request: HttpRequest, export_id: str) -> HttpResponse:
    export, path = export_for_download(user=request.user, export_id=export_id)
    audit_record(
        request_or_user=request,
        action="export.download",
        object_type="export",
        object_id=str(export.id),
        detail={"study_uids": export.study_uids, "size_bytes": export.size_bytes},
    )
    return FileResponse(path.open("rb"), as_attachment=True, filename=export.filename, content_type="application/zip")
