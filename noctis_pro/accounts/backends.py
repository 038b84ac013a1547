"""Authentication backend: Django's, plus every model permission for the admin role (contracts.roles), so a member
of the "admin" group manages /admin/ fully without being made a superuser."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from noctis_pro.accounts.roles import user_is_admin


class RoleBackend(ModelBackend):
    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if user_obj.is_active and user_is_admin(user_obj):
            return True
        return super().has_perm(user_obj, perm, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        if user_obj.is_active and user_is_admin(user_obj):
            return True
        return super().has_module_perms(user_obj, app_label)
