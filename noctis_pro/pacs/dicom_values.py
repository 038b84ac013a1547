"""Lenient parsing of DICOM string values from receipt attrs (DA, TM, IS, PN...): bad input gives None, never raises."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_DA_RE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")  # YYYYMMDD, and the retired YYYY.MM.DD
_TM_RE = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:[.,](\d{1,6}))?)?)?$")  # HH[MM[SS[.F{1,6}]]], HH:MM:SS


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(text(v) for v in value)
    return str(value).replace("\x00", "").strip()


def date_parse(value: Any) -> dt.date | None:
    match = _DA_RE.match(text(value))
    if match is None:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def time_parse(value: Any) -> dt.time | None:
    match = _TM_RE.match(text(value))
    if match is None:
        return None
    hour = int(match[1])
    minute = int(match[2] or 0)
    second = min(int(match[3] or 0), 59)  # 60 is a legal leap second in DICOM, not in Python
    micro = int((match[4] or "0").ljust(6, "0"))
    try:
        return dt.time(hour, minute, second, micro)
    except ValueError:
        return None


def int_parse(value: Any) -> int | None:
    """IS/US values: "12", " 12 ", "12.0"; first of a multi-value; anything else None. Fits a PostgreSQL integer."""
    raw = text(value).split("\\")[0].strip()
    if not raw:
        return None
    try:
        number = int(raw)
    except ValueError:
        try:
            number = int(float(raw))
        except (ValueError, OverflowError):
            return None
    return number if -(2**31) <= number < 2**31 else None


def clip(value: Any, length: int) -> str:
    return text(value)[:length]
