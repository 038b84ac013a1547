"""Lenient DICOM value parsing: real-world oddities give a value or None, never an exception."""

import datetime as dt

import pytest

from noctis_pro.pacs import dicom_values as dv


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("20260115", dt.date(2026, 1, 15)), (" 20260115 ", dt.date(2026, 1, 15)), ("2026.01.15", dt.date(2026, 1, 15)),
     ("20261399", None), ("20260230", None), ("", None), (None, None), ("2026", None), ("garbage", None)],
)  # fmt: skip
def test_date_parse(raw: object, expected: object) -> None:
    assert dv.date_parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("101500", dt.time(10, 15)), ("1015", dt.time(10, 15)), ("10", dt.time(10)),
     ("101500.123", dt.time(10, 15, 0, 123000)), ("10:15:30", dt.time(10, 15, 30)), ("235960", dt.time(23, 59, 59)),
     ("256000", None), ("1061", None), ("", None), ("x", None)],
)  # fmt: skip
def test_time_parse(raw: object, expected: object) -> None:
    assert dv.time_parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12), (" 7 ", 7), ("3.0", 3), ("1\\2", 1), ("", None), ("x", None), ("nan", None), ("1e30", None),
     (5, 5)],
)  # fmt: skip
def test_int_parse(raw: object, expected: object) -> None:
    assert dv.int_parse(raw) == expected


def test_clip_strips_nul_and_truncates() -> None:
    assert dv.clip("ab\x00cdef ", 4) == "abcd"
    assert dv.clip(None, 4) == ""
