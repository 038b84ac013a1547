"""The audit log: who did what to which object, from where. One write path for Django code."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest

from noctis_pro.core.models import AuditEvent


def _remote_addr(request: HttpRequest) -> str:
    # Behind nginx ($proxy_add_x_forwarded_for) the LAST entry is the address nginx saw; earlier entries come
    # from the client and can be forged.
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded:
        return forwarded.split(",")[-1].strip()[:64]
    return str(request.META.get("REMOTE_ADDR", ""))[:64]


def audit_record(
    *,
    request_or_user: HttpRequest | AbstractBaseUser | AnonymousUser | None,
    action: str,
    object_type: str = "",
    object_id: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    remote_addr = ""
    user: Any = request_or_user
    if isinstance(request_or_user, HttpRequest):
        remote_addr = _remote_addr(request_or_user)
        user = getattr(request_or_user, "user", None)
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    return AuditEvent.objects.create(
        user=user,
        username=user.get_username() if user is not None else "",
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:128],
        remote_addr=remote_addr,
        detail=detail or {},
    )
