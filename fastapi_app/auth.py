"""The same identity as Django, verified by reading Django's tables (never by importing Django).

Two ways in:
- `Authorization: Bearer <token>`: sha256 hex of the raw token -> accounts_apitoken row, not revoked, active user.
- Django's session cookie: django_session row (unexpired) -> session_data signed as django.core.signing does
  (TimestampSigner, salt "django.contrib.sessions.SessionStore", sha256 HMAC keyed by salted_hmac) ->
  `_auth_user_id`, and `_auth_user_hash` equal to the user's session auth hash, so a password change (which
  changes the hash) logs the user out everywhere, as in Django.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from fastapi_app import sql
from noctis_pro.contracts import access, roles

logger = logging.getLogger(__name__)

SESSION_SALT = "django.contrib.sessions.SessionStore"
SESSION_AUTH_HASH_SALT = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"
SESSION_USER_ID_KEY = "_auth_user_id"
SESSION_HASH_KEY = "_auth_user_hash"
TOKEN_TOUCH_EVERY = dt.timedelta(minutes=1)
MAX_SESSION_DATA = 1 << 20  # a session row is small; refuse to inflate anything huge


@dataclass(frozen=True)
class User:
    id: int
    username: str
    is_superuser: bool
    is_staff: bool
    groups: list[str] = field(default_factory=list)
    facility_ids: list[int] = field(default_factory=list)  # the facilities the user belongs to

    @property
    def permissions(self) -> frozenset[str]:
        return roles.permissions_for(is_superuser=self.is_superuser, groups=self.groups)

    @property
    def visible_facility_ids(self) -> list[int] | None:
        """The facility rule (contracts.access): None = every study; 0 stands for "no facility"."""
        return access.visible_facility_ids(
            is_superuser=self.is_superuser, groups=self.groups, member_of=self.facility_ids
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "is_superuser": self.is_superuser,
            "is_staff": self.is_staff,
            "groups": list(self.groups),
            "permissions": sorted(self.permissions),
        }


def _user(row: sql.UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        is_superuser=row.is_superuser,
        is_staff=row.is_staff,
        groups=row.groups,
        facility_ids=row.facility_ids,
    )


# --- Django's crypto, reimplemented (django/utils/crypto.py, django/core/signing.py) -------------------------


def salted_hmac(key_salt: str, value: str | bytes, secret: str, *, algorithm: str = "sha256") -> hmac.HMAC:
    """django.utils.crypto.salted_hmac: the HMAC key is hash(key_salt + secret)."""
    hasher = getattr(hashlib, algorithm)
    key = hasher(key_salt.encode() + secret.encode()).digest()
    message = value if isinstance(value, bytes) else value.encode()
    return hmac.new(key, msg=message, digestmod=hasher)


def _b64_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def signed_object_loads(signed: str, *, secret: str, salt: str) -> Any:
    """django.core.signing.loads (TimestampSigner, sha256, no max_age): the object, or ValueError when forged."""
    try:
        value, signature = signed.rsplit(":", 1)
        payload, _timestamp = value.rsplit(":", 1)
    except ValueError:
        raise ValueError("not a signed value") from None
    expected = base64.urlsafe_b64encode(salted_hmac(salt + "signer", value, secret).digest()).rstrip(b"=").decode()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise ValueError("bad signature")
    compressed = payload.startswith(".")
    data = _b64_decode(payload[1:] if compressed else payload)
    if compressed:
        inflater = zlib.decompressobj()
        data = inflater.decompress(data, MAX_SESSION_DATA)
        if inflater.unconsumed_tail:
            raise ValueError("session payload too large")
    return json.loads(data.decode("latin-1"))


def session_decode(session_data: str, *, secret: str) -> dict[str, Any] | None:
    """A django_session.session_data payload as a dict, or None when it is not signed with `secret`."""
    try:
        decoded = signed_object_loads(session_data, secret=secret, salt=SESSION_SALT)
    except (ValueError, zlib.error, UnicodeDecodeError) as exc:
        logger.info("session refused: %s", exc)
        return None
    return decoded if isinstance(decoded, dict) else None


def session_auth_hash(*, password: str, secret: str) -> str:
    """AbstractBaseUser.get_session_auth_hash with SECRET_KEY = secret."""
    return salted_hmac(SESSION_AUTH_HASH_SALT, password, secret).hexdigest()


def token_hash(raw: str) -> str:
    """noctis_pro.accounts.models.token_hash: tokens are stored as sha256 hex."""
    return hashlib.sha256(raw.encode()).hexdigest()


# --- look-ups ---------------------------------------------------------------------------------------------------


async def user_from_token(pool: asyncpg.Pool, *, raw_token: str) -> User | None:
    row = await sql.user_by_token_hash(pool, key_hash=token_hash(raw_token))
    if row is None:
        return None
    now = dt.datetime.now(dt.UTC)
    if row.last_used_at is None or now - row.last_used_at >= TOKEN_TOUCH_EVERY:
        await sql.token_touch(pool, token_id=row.token_id)
    return _user(row.user)


async def user_from_session(pool: asyncpg.Pool, *, session_key: str, secret: str) -> User | None:
    if not session_key or len(session_key) > 40:  # Django's session_key column is varchar(40)
        return None
    data = await sql.session_data(pool, session_key=session_key)
    if data is None:
        return None
    session = session_decode(data, secret=secret)
    if session is None:
        return None
    try:
        user_id = int(session[SESSION_USER_ID_KEY])
    except (KeyError, TypeError, ValueError):
        return None
    row = await sql.user_active_by_id(pool, user_id=user_id)
    if row is None:
        return None
    expected = session_auth_hash(password=row.password, secret=secret)
    if not hmac.compare_digest(expected.encode(), str(session.get(SESSION_HASH_KEY, "")).encode()):
        return None
    return _user(row)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


async def authenticate(
    pool: asyncpg.Pool,
    *,
    secret: str,
    authorization: str | None,
    session_key: str | None,
    query_token: str | None = None,
) -> User | None:
    """The user behind a request's credentials, or None. A token that is present but wrong does not fall back."""
    token = bearer_token(authorization) or query_token
    if token:
        return await user_from_token(pool, raw_token=token)
    if session_key:
        return await user_from_session(pool, session_key=session_key, secret=secret)
    return None
