"""The worklist's filter form: validates query parameters into pacs.selectors.WorklistFilters."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from noctis_pro.pacs.models import StudyPriority, StudyStatus
from noctis_pro.pacs.selectors import DEFAULT_ORDERING, ORDERINGS, WorklistFilters, worklist_readers

DATE_PRESETS = [("", "Any date"), ("today", "Today"), ("yesterday", "Yesterday"), ("7d", "Last 7 days")]


def date_preset_range(preset: str, *, today: dt.date) -> tuple[dt.date | None, dt.date | None]:
    """The study-date range of a preset ("today", "yesterday", "7d": the last 7 days including today)."""
    if preset == "today":
        return today, today
    if preset == "yesterday":
        day = today - dt.timedelta(days=1)
        return day, day
    if preset == "7d":
        return today - dt.timedelta(days=6), today
    return None, None


class WorklistFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=64, label="Patient name or ID")
    accession_number = forms.CharField(required=False, max_length=64, label="Accession")
    modality = forms.CharField(required=False, max_length=16, label="Modality")
    body_part = forms.CharField(required=False, max_length=64, label="Body part")
    date = forms.ChoiceField(required=False, choices=DATE_PRESETS, label="Date")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *StudyStatus.choices], label="Status")
    priority = forms.ChoiceField(
        required=False, choices=[("", "Any priority"), *StudyPriority.choices], label="Priority"
    )
    assigned = forms.ChoiceField(required=False, label="Assigned")
    ordering = forms.ChoiceField(required=False, choices=[(k, k) for k in ORDERINGS], widget=forms.HiddenInput)
    # Kept for links and API-like use: an exact patient ID, or a name pattern with * and ?.
    patient_name = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    patient_id = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: object, user: AbstractBaseUser | AnonymousUser | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.user = user
        readers = [(str(r["pk"]), r["username"]) for r in worklist_readers()]
        self.fields["assigned"].choices = [("", "Anyone"), ("me", "Me"), ("none", "Nobody"), *readers]

    def filters(self) -> WorklistFilters:
        if not self.is_bound:
            return WorklistFilters()
        self.is_valid()  # fills cleaned_data with the valid fields: a malformed one is ignored, the rest filter
        data = self.cleaned_data
        date_from, date_to = data.get("date_from"), data.get("date_to")
        if data.get("date"):
            date_from, date_to = date_preset_range(data["date"], today=timezone.localdate())
        assigned = data.get("assigned") or ""
        assigned_to_id: int | None = None
        if assigned == "me" and self.user is not None:
            assigned_to_id = self.user.pk
        elif assigned.isdigit():
            assigned_to_id = int(assigned)
        q = (data.get("q") or "").strip()
        return WorklistFilters(
            patient_name=data.get("patient_name") or "",
            patient_id=data.get("patient_id") or "",
            patient_query=q,
            accession_number=data.get("accession_number") or "",
            modality=data.get("modality") or "",
            body_part=data.get("body_part") or "",
            date_from=date_from,
            date_to=date_to,
            status=data.get("status") or "",
            priority=data.get("priority") or "",
            assigned_to_id=assigned_to_id,
            unassigned=assigned == "none",
            ordering=data.get("ordering") or DEFAULT_ORDERING,
        )
