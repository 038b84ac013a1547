"""Admin: facilities with their sending AE titles and members. Mapping an AE claims its unassigned studies."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from noctis_pro.facilities.models import Facility, FacilityAE
from noctis_pro.facilities.services import facility_ae_studies_claim


class FacilityAEInline(admin.TabularInline):
    model = FacilityAE
    extra = 1


@admin.register(Facility)
class FacilityAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name", "ae_titles__ae_title")
    filter_horizontal = ("members",)
    inlines = [FacilityAEInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        for ae in FacilityAE.objects.filter(facility=form.instance):
            facility_ae_studies_claim(ae=ae)


@admin.register(FacilityAE)
class FacilityAEAdmin(admin.ModelAdmin):
    list_display = ("ae_title", "facility")
    search_fields = ("ae_title", "facility__name")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        facility_ae_studies_claim(ae=obj)
