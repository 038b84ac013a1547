"""The shared rules: what each role may do, which facilities a user sees, and the report.signed payload."""

from __future__ import annotations

import json

import pytest

from noctis_pro.contracts import access, events, roles


@pytest.mark.parametrize(
    ("groups", "superuser", "allowed", "refused"),
    [
        ((), True, set(roles.PERMISSIONS), set()),
        (("admin",), False, set(roles.PERMISSIONS), set()),
        (("radiologist",), False, {roles.REPORT_SIGN, roles.STUDY_ASSIGN}, {roles.ADMIN_SITE, roles.STUDY_STORE}),
        (("technologist",), False, {roles.STUDY_STORE, roles.STUDY_PRIORITY}, {roles.REPORT_SIGN, roles.REPORT_WRITE}),
        (("referrer",), False, {roles.STUDY_VIEW, roles.REPORT_VIEW}, {roles.REPORT_VIEW_DRAFT, roles.ADMIN_SITE}),
        ((), False, set(), set(roles.PERMISSIONS)),
        (("visitors",), False, set(), {roles.STUDY_VIEW}),  # a group that is no role grants nothing
        (("referrer", "technologist"), False, {roles.STUDY_STORE, roles.STUDY_VIEW}, {roles.REPORT_SIGN}),
    ],
)
def test_permissions_per_role(groups: tuple[str, ...], superuser: bool, allowed: set[str], refused: set[str]) -> None:
    granted = roles.permissions_for(is_superuser=superuser, groups=groups)
    assert allowed <= granted
    assert not refused & granted


def test_visible_facilities() -> None:
    assert access.visible_facility_ids(is_superuser=True, groups=[], member_of=[3]) is None
    assert access.visible_facility_ids(is_superuser=False, groups=["admin"], member_of=[]) is None
    assert access.visible_facility_ids(is_superuser=False, groups=["radiologist"], member_of=[5, 2, 5]) == [2, 5]
    assert access.visible_facility_ids(is_superuser=False, groups=["referrer"], member_of=[]) == [access.UNASSIGNED]
    assert access.facility_visible(None, [access.UNASSIGNED])
    assert not access.facility_visible(None, [2])
    assert access.facility_visible(2, [2, 5])
    assert not access.facility_visible(3, [2, 5])
    assert access.facility_visible(3, None)


def test_report_signed_event_payload() -> None:
    event = events.ReportSigned(study_instance_uid="1.2", report_id=7, signed_by="dr", status="final")
    assert json.loads(event.to_json()) == {
        "type": "report.signed",
        "study_instance_uid": "1.2",
        "report_id": 7,
        "signed_by": "dr",
        "status": "final",
    }
