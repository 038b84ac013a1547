"""/audit/: admins search the audit log (user, action, study, address, date range), 100 events a page."""

from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from noctis_pro.accounts.roles import role_required
from noctis_pro.contracts import roles
from noctis_pro.core.audit import AuditFilters, audit_actions, audit_record, audit_search

PAGE_SIZE = 100


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User")
    action = forms.CharField(  # "report." matches every report action
        required=False, max_length=64, label="Action", widget=forms.TextInput(attrs={"list": "audit-actions"})
    )
    study = forms.CharField(required=False, max_length=128, label="Study UID")
    remote_addr = forms.CharField(required=False, max_length=64, label="From address")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def filters(self) -> AuditFilters:
        if not self.is_bound:
            return AuditFilters()
        self.is_valid()
        data = self.cleaned_data
        return AuditFilters(
            username=data.get("user") or "",
            action=data.get("action") or "",
            object_id=data.get("study") or "",
            remote_addr=data.get("remote_addr") or "",
            at_from=data.get("date_from"),
            at_to=data.get("date_to"),
        )


@role_required(roles.AUDIT_VIEW)
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    filters = form.filters()
    page = Paginator(audit_search(filters=filters), PAGE_SIZE).get_page(request.GET.get("page"))
    # Reading the log is itself recorded: who looked for what.
    audit_record(
        request_or_user=request,
        action="audit.search",
        object_type="audit",
        detail={k: str(v) for k, v in (form.cleaned_data if form.is_bound else {}).items() if v},
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode(), "actions": audit_actions()}
    return render(request, "audit/search.html", context)
