"""Forms of the node pages (pacs.node_views): they parse input; pacs.nodes validates and acts."""

from __future__ import annotations

from django import forms

from noctis_pro.contracts import nodes as rules
from noctis_pro.contracts import scu
from noctis_pro.pacs.models import Node
from noctis_pro.pacs.nodes import NodeFields


class NodeForm(forms.Form):
    name = forms.CharField(max_length=rules.MAX_NAME_LENGTH)
    ae_title = forms.CharField(max_length=rules.MAX_AE_TITLE_LENGTH, label="AE title", strip=False)
    host = forms.CharField(max_length=rules.MAX_HOST_LENGTH)
    port = forms.IntegerField(min_value=1, max_value=65535)
    enabled = forms.BooleanField(required=False, initial=True)
    may_store = forms.BooleanField(required=False, initial=True, label="may store to us")
    may_query = forms.BooleanField(required=False, initial=True, label="may query us")
    may_retrieve = forms.BooleanField(required=False, initial=True, label="may retrieve from us")
    may_receive = forms.BooleanField(required=False, initial=True, label="receives from us")

    @classmethod
    def for_node(cls, node: Node) -> NodeForm:
        return cls(initial={field: getattr(node, field) for field in cls.base_fields})

    def clean(self) -> dict:
        data = super().clean() or {}
        for field, problem in rules.node_problems(
            name=data.get("name"), ae_title=data.get("ae_title"), host=data.get("host"), port=data.get("port")
        ).items():
            if field not in self.errors:
                self.add_error(field, problem)
        return data

    def fields_value(self) -> NodeFields:
        return NodeFields(**{field: self.cleaned_data[field] for field in self.base_fields})


class RuleForm(forms.Form):
    name = forms.CharField(max_length=rules.MAX_NAME_LENGTH)
    modality = forms.CharField(max_length=16, required=False, help_text="blank = any")
    calling_ae = forms.CharField(max_length=16, required=False, label="from AE", help_text="blank = any")
    node = forms.ModelChoiceField(queryset=Node.objects.filter(may_receive=True).order_by("name"), label="to node")


class SendForm(forms.Form):
    node = forms.ModelChoiceField(
        queryset=Node.objects.filter(enabled=True, may_receive=True).order_by("name"), empty_label=None
    )
    series_uid = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)


class QueryForm(forms.Form):
    node = forms.ModelChoiceField(queryset=Node.objects.filter(enabled=True).order_by("name"), empty_label=None)
    PatientName = forms.CharField(required=False, max_length=64, label="Patient name")
    PatientID = forms.CharField(required=False, max_length=64, label="Patient ID")
    AccessionNumber = forms.CharField(required=False, max_length=64, label="Accession")
    StudyDate = forms.CharField(required=False, max_length=17, label="Study date", help_text="YYYYMMDD[-YYYYMMDD]")
    ModalitiesInStudy = forms.CharField(required=False, max_length=16, label="Modality")

    def filters(self) -> dict[str, str]:
        return {key: self.cleaned_data.get(key, "") for key in scu.STUDY_FILTERS if self.cleaned_data.get(key)}


class RetrieveForm(forms.Form):
    node = forms.ModelChoiceField(queryset=Node.objects.filter(enabled=True))
    study_uid = forms.CharField(max_length=64)
