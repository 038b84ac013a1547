"""Fixtures for the FastAPI tests: the app against pytest-django's test database, users, tokens and studies.

Rows are made with the Django ORM and committed (`transactional_db`) so FastAPI's asyncpg pool sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from django.conf import settings as django_settings
from pydicom.uid import generate_uid

from fastapi_app.settings import Settings
from tests.conftest import free_port, test_database_url

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/4")
# fastapi_app.main builds `app` from the environment when imported; the tests build their own apps.
os.environ.setdefault("DJANGO_SECRET_KEY", django_settings.SECRET_KEY)
T = TypeVar("T")


async def orm(fn: Callable[[], T]) -> T:
    """Run ORM work from an async test: in a worker thread whose connection is closed afterwards (an unclosed
    one would keep the test database from being dropped)."""
    from django.db import connections

    def run() -> T:
        try:
            return fn()
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


@pytest.fixture
def database_url(transactional_db: None) -> str:
    return test_database_url()


@pytest.fixture
def api_settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        redis_url=REDIS_URL,
        django_secret_key=django_settings.SECRET_KEY,
    )


async def _client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from fastapi_app.main import create_app

    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in-process, lifespan (pool, Redis) running."""
    async for client in _client_for(api_settings):
        yield client


@pytest.fixture
def api_for() -> Callable[[Settings], AsyncIterator[httpx.AsyncClient]]:
    """`async for client in api_for(settings)`: a client for an app with other settings (e.g. Redis down)."""
    return _client_for


@pytest.fixture
def live_server_url(api_settings: Settings) -> Iterator[str]:
    """host:port of the app served by a real uvicorn on a free loopback port (for WebSocket tests)."""
    with serving(api_settings) as address:
        yield address


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """Serve create_app(settings) with uvicorn in a thread; yields host:port."""
    from fastapi_app.main import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def radiologist(transactional_db: None) -> Any:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username="rad.jones", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name="radiologist")[0])
    return user


@pytest.fixture
def token(radiologist: Any) -> str:
    from noctis_pro.accounts.services import api_token_create

    return api_token_create(user=radiologist, name="tests")


@pytest.fixture
def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class MadeStudy:
    study_instance_uid: str
    patient_id: str
    series_instance_uids: list[str]


@pytest.fixture
def study_make(transactional_db: None) -> Callable[..., Awaitable[MadeStudy]]:
    """`await study_make(patient_name=..., modalities=("CT",), instances_per_series=2, ...)`, committed."""
    from noctis_pro.pacs.models import Instance, Patient, Series, Study

    counter = iter(range(1, 1_000_000))

    def make(
        *,
        patient_name: str = "DOE^JANE",
        patient_id: str | None = None,
        study_date: dt.date | None = dt.date(2026, 1, 15),
        accession_number: str | None = None,
        modalities: tuple[str, ...] = ("CT",),
        instances_per_series: int = 2,
        thumbnail: str = "",
    ) -> MadeStudy:
        n = next(counter)
        patient, _ = Patient.objects.get_or_create(
            patient_id=patient_id or f"PID-{n:04d}",
            issuer_of_patient_id="",
            defaults={"patient_name": patient_name, "birth_date": dt.date(1970, 1, 1), "sex": "F"},
        )
        study = Study.objects.create(
            study_instance_uid=generate_uid(),
            patient=patient,
            study_date=study_date,
            study_time=dt.time(10, 15),
            accession_number=accession_number if accession_number is not None else f"ACC{n:04d}",
            study_description="Chest",
            referring_physician_name="HOUSE^GREGORY",
            modalities_in_study="\\".join(modalities),
            number_of_series=len(modalities),
            number_of_instances=len(modalities) * instances_per_series,
        )
        now = dt.datetime.now(dt.UTC)
        series_uids = []
        for number, modality in enumerate(modalities, start=1):
            series = Series.objects.create(
                series_instance_uid=generate_uid(),
                study=study,
                modality=modality,
                series_number=number,
                series_description=f"{modality} series",
                body_part_examined="CHEST",
                number_of_instances=instances_per_series,
                thumbnail=thumbnail,
            )
            series_uids.append(series.series_instance_uid)
            for i in range(instances_per_series, 0, -1):  # stored out of order on purpose
                sop_uid = generate_uid()
                Instance.objects.create(
                    sop_instance_uid=sop_uid,
                    series=series,
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    instance_number=i,
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    path=f"{study.study_instance_uid}/{series.series_instance_uid}/{sop_uid}.dcm",
                    size_bytes=8_000 + i,
                    digest="sha256:" + "0" * 64,
                    rows=64,
                    columns=64,
                    number_of_frames=1,
                    received_at=now,
                )
        return MadeStudy(study.study_instance_uid, patient.patient_id, series_uids)

    async def make_committed(**kwargs: Any) -> MadeStudy:
        return await orm(lambda: make(**kwargs))

    return make_committed
