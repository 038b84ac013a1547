"""The audit log: who did what to which object, from where. One write path for Django code, and the search
admins run over it (accounts.audit_views)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

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


@dataclass(frozen=True)
class AuditFilters:
    username: str = ""  # exact, case-insensitive
    action: str = ""  # exact, or a prefix ending in "." ("report." = every report action)
    object_id: str = ""  # a study (or other object) id, exact
    remote_addr: str = ""
    at_from: dt.date | None = None
    at_to: dt.date | None = None  # inclusive


def audit_search(*, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Audit events matching `filters`, newest first (the `at` index serves the order and the date range)."""
    qs = AuditEvent.objects.all()
    if filters.username.strip():
        qs = qs.filter(username__iexact=filters.username.strip())
    action = filters.action.strip()
    if action:
        qs = qs.filter(action__startswith=action) if action.endswith(".") else qs.filter(action=action)
    if filters.object_id.strip():
        qs = qs.filter(object_id=filters.object_id.strip())
    if filters.remote_addr.strip():
        qs = qs.filter(remote_addr=filters.remote_addr.strip())
    tz = timezone.get_current_timezone()
    if filters.at_from:
        qs = qs.filter(at__gte=dt.datetime.combine(filters.at_from, dt.time.min, tzinfo=tz))
    if filters.at_to:
        qs = qs.filter(at__lt=dt.datetime.combine(filters.at_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz))
    return qs.order_by("-at", "-pk")


def audit_actions() -> list[str]:
    """The actions recorded so far (for the search form's list)."""
    return list(AuditEvent.objects.order_by().values_list("action", flat=True).distinct())
