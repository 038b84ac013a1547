"""Account services: API tokens (shown once, stored as sha256) and the bootstrap administrator."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from noctis_pro.accounts.models import ApiToken, token_hash
from noctis_pro.core.audit import audit_record


def api_token_create(*, user: AbstractBaseUser, name: str = "") -> str:
    """Issue a token for `user` and return the raw value; only its hash is kept."""
    raw = ApiToken.new_raw()
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name, key_hash=token_hash(raw), prefix=raw[:12])
        audit_record(
            request_or_user=user,
            action="token.create",
            object_type="api_token",
            object_id=str(token.pk),
            detail={"name": name, "prefix": token.prefix},
        )
    return raw


def admin_ensure(*, username: str, password: str, email: str = "", reset: bool = False) -> str:
    """Create the superuser if missing; set the password of an existing one only when `reset`.

    Returns what happened: "created", "reset" or "exists".
    """
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.select_for_update().filter(username=username).first()
        if user is None:
            user_model.objects.create_superuser(username=username, email=email, password=password)
            return "created"
        if reset:
            user.set_password(password)
            user.is_active = True
            user.is_staff = True
            user.is_superuser = True
            user.save(update_fields=["password", "is_active", "is_staff", "is_superuser"])
            return "reset"
        return "exists"
