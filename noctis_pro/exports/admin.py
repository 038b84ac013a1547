from django.contrib import admin

from noctis_pro.exports.models import Export


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "requested_by", "status", "instances_done", "instances_total", "created_at", "expires_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in Export._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False  # exports are asked for from the study page or /api/v1
