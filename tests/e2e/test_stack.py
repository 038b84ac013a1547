"""Every service of the design runs for real and answers through nginx, started as `make run` starts it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid

import httpx
import psycopg
import pytest
import websockets
from celery import Celery

from tests.stack import Stack

pytestmark = pytest.mark.e2e


def dcmtk(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TCP_NODELAY": "1"}
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=60, check=False)


def test_root_through_nginx_shows_the_login_page(stack: Stack) -> None:
    response = httpx.get(stack.base_url + "/", follow_redirects=True)
    assert response.status_code == 200
    assert "/login" in str(response.url)
    assert 'name="password"' in response.text


def test_admin_login_reaches_the_worklist(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, follow_redirects=True) as client:
        page = client.get("/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf, "login form has a CSRF token"
        response = client.post(
            "/login/",
            data={"username": stack.admin_user, "password": stack.admin_password, "csrfmiddlewaretoken": csrf[1]},
            headers={"Referer": stack.base_url + "/login/"},
        )
        assert response.status_code == 200
        assert "/login" not in str(response.url)
        assert "Worklist" in response.text


def test_health_endpoints_answer_through_nginx(stack: Stack) -> None:
    api = httpx.get(stack.base_url + "/api/v1/health")
    assert api.status_code == 200, api.text
    assert api.json()["database"] == "ok"
    django = httpx.get(stack.base_url + "/health/")
    assert django.status_code == 200, django.text


def test_openapi_docs_are_served(stack: Stack) -> None:
    spec = httpx.get(stack.base_url + "/api/v1/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/health" in spec.json()["paths"]


def test_echoscu_succeeds_with_our_ae_title(stack: Stack) -> None:
    result = dcmtk("echoscu", "-aec", stack.ae_title, "127.0.0.1", str(stack.dicom_port))
    assert result.returncode == 0, result.stderr


def test_echoscu_with_a_wrong_called_ae_title_is_rejected(stack: Stack) -> None:
    result = dcmtk("echoscu", "-aec", "WRONG_AE", "127.0.0.1", str(stack.dicom_port))
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr + result.stdout


def test_ws_refuses_an_anonymous_client(stack: Stack) -> None:
    async def attempt() -> None:
        async with websockets.connect(stack.ws_url, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), timeout=5)

    with pytest.raises((websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed)):
        asyncio.run(attempt())


def test_celery_task_round_trips_through_the_worker_and_its_event_reaches_ws(stack: Stack, api_token: str) -> None:
    token = uuid.uuid4().hex
    app = Celery(broker=stack.env["REDIS_URL"], backend=stack.env["REDIS_URL"])

    async def scenario() -> dict:
        headers = {"Authorization": f"Bearer {api_token}"}
        async with websockets.connect(stack.ws_url, additional_headers=headers, open_timeout=10) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            assert hello["type"] == "hello"
            result = app.send_task("noctis_pro.pacs.tasks.ping", args=[token])
            assert await asyncio.to_thread(result.get, timeout=30) == token
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                if event.get("type") == "task.echo" and event.get("token") == token:
                    return event

    event = asyncio.run(scenario())
    assert event["token"] == token


def test_manage_py_in_a_second_terminal_talks_to_the_running_stack(stack: Stack) -> None:
    result = stack.manage("shell", "-c", "from django.contrib.auth.models import User; print(User.objects.count())")
    assert int(result.stdout.strip()) >= 1


def test_ai_processor_runs_its_loop_on_the_real_table(stack: Stack) -> None:
    """An analysis queued in PostgreSQL is taken and finished by the running processor."""
    script = (
        "from noctis_pro.pacs.models import Patient, Study; from noctis_pro.ai.models import AIAnalysis;"
        "p, _ = Patient.objects.get_or_create(patient_id='E2E-AI');"
        "s, _ = Study.objects.get_or_create(study_instance_uid='2.25.4242', defaults={'patient': p});"
        "print(AIAnalysis.objects.create(study=s, analyzer='study_inventory').pk)"
    )
    analysis_id = int(stack.manage("shell", "-c", script).stdout.strip())
    status = ""
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        for _ in range(120):
            row = conn.execute("SELECT status FROM ai_analysis WHERE id = %s", (analysis_id,)).fetchone()
            status = row[0] if row else ""
            if status in {"done", "failed"}:
                break
            time.sleep(0.25)
    assert status == "done", stack.log_tail()
