"""Account commands: create_api_token (prints the raw token once, stores its sha256) and ensure_admin."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from noctis_pro.accounts.models import ApiToken
from noctis_pro.core.models import AuditEvent
from tests.conftest import test_database_url

pytestmark = pytest.mark.django_db


def test_create_api_token_prints_only_a_token_whose_sha256_is_stored() -> None:
    user = User.objects.create_user("robot")
    out = io.StringIO()
    call_command("create_api_token", "robot", "--name", "pacs-bridge", stdout=out)
    raw = out.getvalue().strip()
    assert "\n" not in raw
    assert raw.startswith("np_")
    token = ApiToken.objects.get(user=user)
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert token.name == "pacs-bridge"
    assert raw not in str(ApiToken.objects.values_list().get())  # the raw token is not stored anywhere
    assert AuditEvent.objects.filter(action="token.create", object_id=str(token.pk)).exists()


def test_create_api_token_for_an_unknown_user_fails_clearly() -> None:
    with pytest.raises(CommandError, match="unknown user 'ghost'"):
        call_command("create_api_token", "ghost")
    assert ApiToken.objects.count() == 0


def test_ensure_admin_creates_once_and_resets_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCTIS_ADMIN_PASSWORD", "first-password-0123")
    out = io.StringIO()
    call_command("ensure_admin", "--username", "admin", stdout=out)
    assert "first-password" not in out.getvalue()
    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password("first-password-0123")

    monkeypatch.setenv("NOCTIS_ADMIN_PASSWORD", "second-password-4567")
    call_command("ensure_admin", "--username", "admin", stdout=io.StringIO())
    assert User.objects.get(username="admin").check_password("first-password-0123")
    call_command("ensure_admin", "--username", "admin", "--reset", stdout=io.StringIO())
    assert User.objects.get(username="admin").check_password("second-password-4567")
    assert User.objects.filter(username="admin").count() == 1


def test_ensure_admin_requires_the_password_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOCTIS_ADMIN_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="NOCTIS_ADMIN_PASSWORD"):
        call_command("ensure_admin", "--username", "admin")
    assert not User.objects.filter(username="admin").exists()


def test_the_design_roles_exist_as_groups() -> None:

    assert {"admin", "radiologist", "technologist", "referrer"} <= set(Group.objects.values_list("name", flat=True))


def test_scripted_shell_prints_only_the_scripts_output(tmp_path: Path) -> None:

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "noctis_pro.settings.test",
        "DATABASE_URL": test_database_url(),
        "NOCTIS_ENV_FILE": str(tmp_path / "no.env"),
    }
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", "print(Study.__name__)"],  # Study: auto-imported
        cwd=root, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert result.stdout == "Study\n"
