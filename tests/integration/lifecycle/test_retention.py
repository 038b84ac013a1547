"""Retention: the dry run lists exactly what is then deleted, files and index together, audited; what does not
match (other modality, too recent, reported, changed since the dry run) stays."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from noctis_pro.core.models import AuditEvent
from noctis_pro.pacs.models import Instance, Patient, Receipt, Study
from noctis_pro.retention.models import RetentionPolicy
from noctis_pro.retention.services import retention_apply, retention_plan

pytestmark = pytest.mark.django_db


def files_of(study_uid: str) -> list[Path]:
    return [
        Path(settings.STORAGE_ROOT) / p
        for p in Instance.objects.filter(series__study__study_instance_uid=study_uid).values_list("path", flat=True)
    ]


def days_ago(n: int) -> str:
    return (timezone.now() - dt.timedelta(days=n)).strftime("%Y%m%d")


def test_dry_run_matches_what_is_deleted(indexed_study: Callable[..., str]) -> None:
    old_ct = indexed_study(n=3, modality="CT", StudyDate=days_ago(400), patient_id="OLD-CT")
    old_mr = indexed_study(n=2, modality="MR", StudyDate=days_ago(400), patient_id="OLD-MR")
    new_ct = indexed_study(n=2, modality="CT", StudyDate=days_ago(10), patient_id="NEW-CT")
    undated = indexed_study(n=1, modality="CT", StudyDate="", patient_id="NO-DATE")
    RetentionPolicy.objects.create(name="ct-1y", modality="CT", older_than_days=365, enabled=True)
    RetentionPolicy.objects.create(name="disabled", modality="MR", older_than_days=1, enabled=False)

    plan = retention_plan()
    assert [p.study_uid for p in plan] == [old_ct]
    assert plan[0].instances == 3
    assert plan[0].size_bytes > 0
    assert plan[0].policy == "ct-1y"
    paths = files_of(old_ct)
    assert all(p.exists() for p in paths)

    result = retention_apply(plan)
    assert result.deleted == [old_ct]
    assert result.files_removed == 3
    assert not result.skipped
    assert not any(p.exists() for p in paths)
    assert not paths[0].parent.exists()  # the empty series folder went too
    assert not Study.objects.filter(study_instance_uid=old_ct).exists()
    assert not Receipt.objects.filter(study_instance_uid=old_ct).exists()  # a re-send is stored again
    assert not Patient.objects.filter(patient_id="OLD-CT").exists()
    for kept in (old_mr, new_ct, undated):
        assert Study.objects.filter(study_instance_uid=kept).exists()
        assert all(p.exists() for p in files_of(kept))
    event = AuditEvent.objects.get(action="retention.delete", object_id=old_ct)
    assert event.detail["policy"] == "ct-1y"
    assert event.detail["files_removed"] == 3


def test_modality_matches_the_whole_code_and_reported_studies_are_kept(indexed_study: Callable[..., str]) -> None:
    from noctis_pro.reports.models import Report

    old = days_ago(100)
    ct = indexed_study(n=1, modality="CT", StudyDate=old)
    indexed_study(n=1, modality="OCT", StudyDate=old)  # "CT" inside another code must not match
    reported = indexed_study(n=1, modality="CT", StudyDate=old)
    Report.objects.create(study=Study.objects.get(study_instance_uid=reported))
    policy = RetentionPolicy.objects.create(name="ct", modality="CT", older_than_days=30, enabled=True)
    assert [p.study_uid for p in retention_plan()] == [ct]
    policy.delete_reported = True
    policy.save()
    assert sorted(p.study_uid for p in retention_plan()) == sorted([ct, reported])


def test_a_study_that_grew_after_the_dry_run_is_skipped(indexed_study: Callable[..., str], storage_root: Path) -> None:
    from noctis_pro.pacs.indexing import receipts_index
    from tests.conftest import make_dataset
    from tests.integration.django.receipts import receipt_insert

    uid = indexed_study(n=2, StudyDate=days_ago(50))
    RetentionPolicy.objects.create(name="all", older_than_days=30, enabled=True)
    plan = retention_plan()
    series_uid = Instance.objects.filter(series__study__study_instance_uid=uid).first().series.series_instance_uid
    late = receipt_insert(
        ds=make_dataset(study_uid=uid, series_uid=series_uid, instance_number=3, StudyDate=days_ago(50)),
        storage_root=storage_root,
    )
    receipts_index(receipt_ids=[late.pk])
    result = retention_apply(plan)
    assert result.deleted == []
    assert result.skipped == {uid: "changed since the dry run"}
    assert len(files_of(uid)) == 3
    assert all(p.exists() for p in files_of(uid))


def test_command_dry_run_then_apply(indexed_study: Callable[..., str]) -> None:
    uid = indexed_study(n=2, StudyDate=days_ago(40))
    RetentionPolicy.objects.create(name="30d", older_than_days=30, enabled=True)
    out = StringIO()
    call_command("retention", stdout=out)
    assert uid in out.getvalue()
    assert "(dry run)" in out.getvalue()
    assert Study.objects.filter(study_instance_uid=uid).exists()
    out = StringIO()
    call_command("retention", "--apply", stdout=out)
    assert "deleted 1 studies, 2 files" in out.getvalue()
    assert not Study.objects.filter(study_instance_uid=uid).exists()
