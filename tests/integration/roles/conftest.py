"""A small world for the access tests: facilities A and B (each with its sending AE), one study from each and one
from an unknown AE (all through the real indexing path), and one user per role (with API tokens).

Transactional, so FastAPI's pool sees the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from fastapi_app.settings import Settings
from noctis_pro.pacs.indexing import receipts_index
from tests.conftest import make_dataset
from tests.integration.api.conftest import (  # noqa: F401 (fixtures)
    PASSWORD,
    REDIS_URL,
    database_url,
    serving,
)
from tests.integration.django.receipts import receipt_insert, storage_root  # noqa: F401 (fixture)


@dataclass
class World:
    studies: dict[str, str]  # "A", "B", "U" (unassigned) -> Study Instance UID
    series: dict[str, str]
    sops: dict[str, str]
    users: dict[str, Any]  # role name -> User
    tokens: dict[str, str]


USERS = {
    # name: (groups, facilities, superuser)
    "admin": ((), (), True),
    "admin_group": (("admin",), (), False),
    "radiologist_a": (("radiologist",), ("A",), False),
    "technologist_a": (("technologist",), ("A",), False),
    "referrer_a": (("referrer",), ("A",), False),
    "radiologist_ab": (("radiologist",), ("A", "B"), False),
    "radiologist_none": (("radiologist",), (), False),
    "no_role_a": ((), ("A",), False),
}


@pytest.fixture
def world(transactional_db: None, storage_root: Path) -> World:  # noqa: F811
    from django.contrib.auth.models import Group, User

    from noctis_pro.accounts.services import api_token_create
    from noctis_pro.facilities.models import Facility, FacilityAE

    facilities = {}
    for key in ("A", "B"):
        facilities[key] = Facility.objects.create(name=f"Site {key}")
        FacilityAE.objects.create(ae_title=f"SITE_{key}", facility=facilities[key])
    studies, series, sops = {}, {}, {}
    for key, ae in (("A", "SITE_A"), ("B", "SITE_B"), ("U", "UNKNOWN_AE")):
        ds = make_dataset(patient_name=f"PATIENT^{key}", patient_id=f"PID-{key}")
        receipt = receipt_insert(ds=ds, storage_root=storage_root, calling_ae=ae)
        assert receipts_index(receipt_ids=[receipt.pk]).indexed == [receipt.pk]
        studies[key], series[key], sops[key] = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    users, tokens = {}, {}
    for name, (groups, member_of, superuser) in USERS.items():
        maker = User.objects.create_superuser if superuser else User.objects.create_user
        user = maker(username=name, password=PASSWORD)
        for group in groups:
            user.groups.add(Group.objects.get_or_create(name=group)[0])
        for key in member_of:
            facilities[key].members.add(user)
        users[name] = user
        tokens[name] = api_token_create(user=user, name="tests")
    return World(studies=studies, series=series, sops=sops, users=users, tokens=tokens)


@pytest.fixture
def api_server(world: World, database_url: str, storage_root: Path) -> Iterator[str]:  # noqa: F811
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        redis_url=REDIS_URL,
        django_secret_key=django_settings.SECRET_KEY,
        storage_root=storage_root,
    )
    with serving(settings) as address:
        yield f"http://{address}"
