"""Roles on the Django side: the permission map is noctis_pro.contracts.roles (shared with FastAPI); here are
the look-up for a Django user and the view decorator that enforces it on every page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from noctis_pro.contracts import roles

_CACHE_ATTR = "_noctis_permissions"


def user_groups(user: AbstractBaseUser | AnonymousUser) -> list[str]:
    if not getattr(user, "is_authenticated", False):
        return []
    cached = getattr(user, "_noctis_groups", None)
    if cached is None:
        cached = list(user.groups.values_list("name", flat=True))  # type: ignore[union-attr]
        user._noctis_groups = cached  # type: ignore[union-attr]
    return cached


def user_permissions(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """What the user's roles allow; nothing for an anonymous or inactive user. Cached on the user object."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is None:
        cached = roles.permissions_for(is_superuser=user.is_superuser, groups=user_groups(user))  # type: ignore[union-attr]
        setattr(user, _CACHE_ATTR, cached)
    return cached


def user_can(user: AbstractBaseUser | AnonymousUser, permission: str) -> bool:
    assert permission in roles.PERMISSIONS, permission
    return permission in user_permissions(user)


def user_is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return user_can(user, roles.ADMIN_SITE)


def role_required(permission: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A view decorator: anonymous -> the login page; logged in without `permission` -> 403."""
    assert permission in roles.PERMISSIONS, permission

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not user_can(request.user, permission):
                raise PermissionDenied(f"your role does not allow {permission}")
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorate


def admin_site_has_permission(request: HttpRequest) -> bool:
    """/admin/ is for the admin role only: a staff flag alone (a referrer made staff by mistake) is not enough."""
    return user_is_admin(request.user)
