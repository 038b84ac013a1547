"""The facility rule (noctis_pro.contracts.access) for a Django user, as a query filter on studies."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q

from noctis_pro.accounts.roles import user_groups
from noctis_pro.contracts.access import UNASSIGNED, visible_facility_ids


def user_visible_facility_ids(user: AbstractBaseUser | AnonymousUser) -> list[int] | None:
    """None: every study; otherwise the facility ids (UNASSIGNED = studies without a facility). Cached on the user."""
    if not getattr(user, "is_authenticated", False):
        return []
    if not hasattr(user, "_noctis_facilities"):
        member_of = list(user.facilities.values_list("pk", flat=True))  # type: ignore[union-attr]
        user._noctis_facilities = visible_facility_ids(  # type: ignore[union-attr]
            is_superuser=user.is_superuser, groups=user_groups(user), member_of=member_of
        )
    return user._noctis_facilities  # type: ignore[union-attr]


def study_visibility_q(user: AbstractBaseUser | AnonymousUser, *, prefix: str = "") -> Q:
    """A Q on Study (or on a model reaching it through `prefix`, e.g. "study__") for what `user` may see."""
    visible = user_visible_facility_ids(user)
    if visible is None:
        return Q()
    q = Q(**{f"{prefix}facility_id__in": [i for i in visible if i != UNASSIGNED]})
    if UNASSIGNED in visible:
        q |= Q(**{f"{prefix}facility__isnull": True})
    return q
