"""Fixtures: the archive (file + receipt, indexed the real way) and users by role, for exports and retention."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from noctis_pro.pacs.indexing import receipts_index
from tests.conftest import make_dataset
from tests.integration.django.receipts import receipt_insert, storage_root

__all__ = ["indexed_study", "storage_root", "user_with_role"]


@pytest.fixture
def indexed_study(storage_root: Path) -> Callable[..., str]:
    """`indexed_study(n=3, **attrs)`: n instances of one new study archived and indexed; returns its UID."""

    def factory(n: int = 3, **attrs: Any) -> str:
        first = make_dataset(instance_number=1, **attrs)
        receipts = [receipt_insert(ds=first, storage_root=storage_root)]
        for i in range(2, n + 1):
            ds = make_dataset(
                study_uid=first.StudyInstanceUID, series_uid=first.SeriesInstanceUID, instance_number=i, **attrs
            )
            receipts.append(receipt_insert(ds=ds, storage_root=storage_root))
        result = receipts_index(receipt_ids=[r.pk for r in receipts])
        assert not result.failed, result.failed
        return str(first.StudyInstanceUID)

    return factory


@pytest.fixture
def user_with_role(db: None) -> Callable[[str], User]:
    def factory(role: str) -> User:
        user = User.objects.create_user(f"{role}-{User.objects.count()}", password="pw-For-tests-1")
        if role == "superuser":
            user.is_superuser = True
            user.save()
        else:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user

    return factory
