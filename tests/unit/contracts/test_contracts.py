"""noctis_pro.contracts against the golden files the Rust SCP also reads (tests/contracts/*.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from noctis_pro.contracts import events, receipt, signing, storage, uids

GOLDEN = Path(__file__).resolve().parents[2] / "contracts"


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


@pytest.mark.parametrize("uid", golden("uids.json")["valid"])
def test_uid_is_valid_accepts_golden_valid(uid: str) -> None:
    assert uids.uid_is_valid(uid)
    assert uids.uid_problem(uid) is None


@pytest.mark.parametrize("uid", golden("uids.json")["invalid"])
def test_uid_is_valid_rejects_golden_invalid(uid: str) -> None:
    assert not uids.uid_is_valid(uid)
    assert uids.uid_problem(uid) is not None


@pytest.mark.parametrize("case", golden("storage_paths.json")["cases"])
def test_instance_relpath_matches_golden(case: dict[str, str]) -> None:
    path = storage.instance_relpath(study_uid=case["study"], series_uid=case["series"], sop_instance_uid=case["sop"])
    assert path == case["path"]


@pytest.mark.parametrize("case", golden("storage_paths.json")["rejected"])
def test_instance_relpath_rejects_golden(case: dict[str, str]) -> None:
    with pytest.raises(storage.InvalidUidError):
        storage.instance_relpath(study_uid=case["study"], series_uid=case["series"], sop_instance_uid=case["sop"])


def test_signature_for_matches_golden() -> None:
    g = golden("hmac.json")
    assert (
        signing.signature_for(secret=g["secret"], timestamp=g["timestamp"], body=g["body"].encode()) == g["signature"]
    )
    assert (g["timestamp_header"], g["signature_header"]) == (signing.TIMESTAMP_HEADER, signing.SIGNATURE_HEADER)
    assert g["max_skew_seconds"] == signing.MAX_SKEW_SECONDS


def test_signature_problem_names_each_rejection() -> None:
    g = golden("hmac.json")
    body, secret, ts = g["body"].encode(), g["secret"], g["timestamp"]

    def problem(**kw: Any) -> str | None:
        args = {"secret": secret, "body": body, "timestamp": str(ts), "signature": g["signature"], "now": ts + 1.0}
        return signing.signature_problem(**{**args, **kw})

    assert problem() is None
    assert problem(signature=None) == "missing signature"
    assert problem(timestamp="") == "missing signature"
    assert problem(timestamp="soon") == "malformed timestamp"
    assert problem(now=ts + g["max_skew_seconds"] + 1) == "stale signature"
    assert problem(secret="other") == "wrong signature"
    assert problem(body=body + b" ") == "wrong signature"


def test_receipt_contract_matches_golden() -> None:
    g = golden("receipt.json")
    assert g["table"] == receipt.TABLE
    assert g["sources"] == [receipt.SOURCE_DIMSE, receipt.SOURCE_STOW]
    assert list(receipt.ATTR_KEYWORDS) == g["attr_keywords"]


def test_events_serialise_with_their_type() -> None:
    event = events.StudyUpdated(study_instance_uid="1.2", number_of_series=2, number_of_instances=5, modalities=["CT"])
    assert json.loads(event.to_json()) == {
        "type": "study.updated", "study_instance_uid": "1.2", "number_of_series": 2, "number_of_instances": 5,
        "modalities": ["CT"],
    }  # fmt: skip
    assert json.loads(events.TaskEcho(token="t").to_json()) == {"type": "task.echo", "token": "t"}
