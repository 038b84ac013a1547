"""FastAPI accepts Django's identity: API tokens and the session cookie of a real Django login, nothing else."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core import signing
from django.test import Client

from fastapi_app import auth
from tests.integration.api.conftest import PASSWORD, orm

ME = "/api/v1/me"


def _django_login(user: Any) -> str:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client.cookies["sessionid"].value


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _cookie(session_key: str) -> dict[str, str]:
    return {"Cookie": f"sessionid={session_key}"}


async def test_token_accepted_and_last_used_recorded(api: httpx.AsyncClient, radiologist: Any, token: str) -> None:
    response = await api.get(ME, headers=_bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "id": radiologist.id,
        "username": "rad.jones",
        "is_superuser": False,
        "is_staff": False,
        "groups": ["radiologist"],
    }
    first_use = await orm(lambda: radiologist.api_tokens.get().last_used_at)
    assert first_use is not None

    assert (await api.get(ME, headers=_bearer(token))).status_code == 200
    assert await orm(lambda: radiologist.api_tokens.get().last_used_at) == first_use  # at most once a minute


async def test_no_credentials_is_401_with_bearer_challenge(api: httpx.AsyncClient) -> None:
    response = await api.get(ME)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "detail" in response.json()


@pytest.mark.parametrize("header", ["Bearer np_not-a-real-token", "Basic cmFkOnB3", "Bearer "])
async def test_wrong_credentials_are_401(api: httpx.AsyncClient, token: str, header: str) -> None:
    assert (await api.get(ME, headers={"Authorization": header})).status_code == 401


async def test_revoked_token_is_401(api: httpx.AsyncClient, radiologist: Any, token: str) -> None:
    assert (await api.get(ME, headers=_bearer(token))).status_code == 200
    await orm(lambda: radiologist.api_tokens.update(revoked_at=dt.datetime.now(dt.UTC)))
    assert (await api.get(ME, headers=_bearer(token))).status_code == 401


async def test_token_of_inactive_user_is_401(api: httpx.AsyncClient, radiologist: Any, token: str) -> None:
    await orm(lambda: User.objects.filter(pk=radiologist.pk).update(is_active=False))
    assert (await api.get(ME, headers=_bearer(token))).status_code == 401


async def test_session_cookie_from_django_login_accepted(api: httpx.AsyncClient, radiologist: Any) -> None:
    session_key = await orm(lambda: _django_login(radiologist))
    response = await api.get(ME, headers=_cookie(session_key))
    assert response.status_code == 200
    assert response.json()["username"] == "rad.jones"


async def test_unknown_session_key_is_401(api: httpx.AsyncClient, radiologist: Any) -> None:
    session_key = await orm(lambda: _django_login(radiologist))
    forged = session_key[:-4] + ("aaaa" if not session_key.endswith("aaaa") else "bbbb")
    assert (await api.get(ME, headers=_cookie(forged))).status_code == 401


async def test_tampered_session_data_is_401(api: httpx.AsyncClient, radiologist: Any) -> None:
    session_key = await orm(lambda: _django_login(radiologist))

    def forge() -> None:
        # Someone who can write django_session but does not know the secret makes himself the admin.
        admin = User.objects.create_superuser(username="admin", password=PASSWORD)
        session = Session.objects.get(session_key=session_key)
        data = session.get_decoded()
        data["_auth_user_id"] = str(admin.id)
        data["_auth_user_hash"] = admin.get_session_auth_hash()
        session.session_data = signing.dumps(data, key="not-the-secret", salt=auth.SESSION_SALT, compress=True)
        session.save()

    await orm(forge)
    assert (await api.get(ME, headers=_cookie(session_key))).status_code == 401


async def test_expired_session_is_401(api: httpx.AsyncClient, radiologist: Any) -> None:
    session_key = await orm(lambda: _django_login(radiologist))
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    await orm(lambda: Session.objects.filter(session_key=session_key).update(expire_date=yesterday))
    assert (await api.get(ME, headers=_cookie(session_key))).status_code == 401


async def test_password_change_ends_the_session(api: httpx.AsyncClient, radiologist: Any) -> None:
    session_key = await orm(lambda: _django_login(radiologist))
    assert (await api.get(ME, headers=_cookie(session_key))).status_code == 200

    def change_password() -> None:
        user = User.objects.get(pk=radiologist.pk)
        user.set_password("another long passphrase 43")
        user.save()

    await orm(change_password)
    assert (await api.get(ME, headers=_cookie(session_key))).status_code == 401


async def test_session_of_deactivated_user_is_401(api: httpx.AsyncClient, radiologist: Any) -> None:
    session_key = await orm(lambda: _django_login(radiologist))
    await orm(lambda: User.objects.filter(pk=radiologist.pk).update(is_active=False))
    assert (await api.get(ME, headers=_cookie(session_key))).status_code == 401


@pytest.mark.parametrize("compress", [True, False])
def test_signed_object_loads_reads_what_django_signs(compress: bool) -> None:
    secret = "s" * 50
    value = {"_auth_user_id": "7", "blob": "x" * 200}
    signed = signing.dumps(value, key=secret, salt=auth.SESSION_SALT, compress=compress)
    assert signed.startswith(".") is compress
    assert auth.signed_object_loads(signed, secret=secret, salt=auth.SESSION_SALT) == value
    with pytest.raises(ValueError, match="signature"):
        auth.signed_object_loads(signed, secret=secret + "x", salt=auth.SESSION_SALT)
    with pytest.raises(ValueError, match="signature"):
        auth.signed_object_loads(signed, secret=secret, salt="another.salt")


def test_session_auth_hash_matches_django(radiologist: Any) -> None:
    from django.conf import settings

    expected = radiologist.get_session_auth_hash()
    assert auth.session_auth_hash(password=radiologist.password, secret=settings.SECRET_KEY) == expected
