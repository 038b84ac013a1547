"""Admin: the audit log, read-only and searchable."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from noctis_pro.core.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "action", "object_type", "object_id", "remote_addr")
    list_filter = ("action", "object_type")
    search_fields = ("username", "action", "object_id", "remote_addr")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
