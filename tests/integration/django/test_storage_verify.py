"""`manage.py storage_verify`: every stored file against the size and digest recorded when it was stored."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Instance, Receipt


def verify(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("storage_verify", *args, stdout=out)
    except CommandError as e:
        return out.getvalue(), e
    return out.getvalue(), None


@pytest.mark.django_db
def test_missing_resized_and_altered_files_are_reported(archive: Callable[..., Receipt], storage_root: Path) -> None:
    receipts = [archive(modality="CT", instance_number=i) for i in range(1, 6)]
    receipts_index(receipt_ids=[r.pk for r in receipts])
    _intact, altered, shortened, missing, legacy = receipts
    path = {r.sop_instance_uid: storage_root / r.path for r in receipts}

    output, error = verify()
    assert error is None
    assert output.strip() == "5 instance file(s) checked, 0 not as stored"

    # One byte changed (same size), a file cut short, one removed.
    data = bytearray(path[altered.sop_instance_uid].read_bytes())
    data[len(data) // 2] ^= 0xFF
    path[altered.sop_instance_uid].write_bytes(bytes(data))
    path[shortened.sop_instance_uid].write_bytes(path[shortened.sop_instance_uid].read_bytes()[:-10])
    path[missing.sop_instance_uid].unlink()
    # A row from before the BLAKE3 digests: checked as SHA-256.
    legacy_digest = "sha256:" + hashlib.sha256(path[legacy.sop_instance_uid].read_bytes()).hexdigest()
    Instance.objects.filter(sop_instance_uid=legacy.sop_instance_uid).update(digest=legacy_digest)

    output, error = verify()
    assert error is not None
    assert str(error) == "5 instance file(s) checked, 3 not as stored"
    lines = dict(line.split("  ", 1) for line in output.strip().splitlines())
    assert set(lines) == {altered.sop_instance_uid, shortened.sop_instance_uid, missing.sop_instance_uid}
    assert lines[altered.sop_instance_uid].endswith("content differs from what was stored (digest mismatch)")
    cut = shortened.size_bytes - 10
    assert lines[shortened.sop_instance_uid].endswith(f"size {cut} bytes, stored {shortened.size_bytes}")
    assert lines[missing.sop_instance_uid].endswith("file missing")


@pytest.mark.django_db
def test_one_study_can_be_checked_alone(archive: Callable[..., Receipt], storage_root: Path) -> None:
    first = archive(modality="CT", study_uid="1.2.826.0.1.3680043.8.498.901")
    other = archive(modality="MR", study_uid="1.2.826.0.1.3680043.8.498.902")
    receipts_index(receipt_ids=[first.pk, other.pk])
    (storage_root / other.path).unlink()

    output, error = verify("--study", first.study_instance_uid)
    assert error is None
    assert output.strip() == "1 instance file(s) checked, 0 not as stored"
    _, error = verify()
    assert str(error) == "2 instance file(s) checked, 1 not as stored"
