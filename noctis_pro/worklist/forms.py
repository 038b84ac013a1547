"""The worklist's filter form: validates query parameters into pacs.selectors.WorklistFilters."""

from django import forms

from noctis_pro.pacs.selectors import DEFAULT_ORDERING, ORDERINGS, WorklistFilters

ORDERING_CHOICES = [
    ("-study_date", "Newest study"),
    ("study_date", "Oldest study"),
    ("-received_at", "Last received"),
    ("patient_name", "Patient name"),
]
assert {key for key, _ in ORDERING_CHOICES} == set(ORDERINGS)


class WorklistFilterForm(forms.Form):
    patient_name = forms.CharField(required=False, max_length=64, label="Patient name")
    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID")
    accession_number = forms.CharField(required=False, max_length=64, label="Accession")
    modality = forms.CharField(required=False, max_length=16, label="Modality")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    ordering = forms.ChoiceField(required=False, choices=ORDERING_CHOICES, label="Sort")

    def filters(self) -> WorklistFilters:
        if not self.is_bound:
            return WorklistFilters()
        self.is_valid()  # fills cleaned_data with the valid fields: a malformed date is ignored, the rest filter
        data = self.cleaned_data
        return WorklistFilters(
            patient_name=data.get("patient_name", ""),
            patient_id=data.get("patient_id", ""),
            accession_number=data.get("accession_number", ""),
            modality=data.get("modality", ""),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            ordering=data.get("ordering") or DEFAULT_ORDERING,
        )
