"""API tokens issued in Django and accepted by FastAPI (fastapi_app/auth.py reads this table). Stored hashed."""

import hashlib
import secrets

from django.conf import settings
from django.db import models

TOKEN_PREFIX = "np_"  # noqa: S105 (a public marker in front of every token, not a secret)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, default="")
    key_hash = models.CharField(max_length=64, unique=True)  # sha256 hex of the raw token; raw is shown once
    prefix = models.CharField(max_length=12)  # first characters, to tell tokens apart in the admin
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "accounts_apitoken"  # fastapi_app/sql.py reads it

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def new_raw() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)
