"""The DICOM JSON model (PS3.18 F.2) for index rows: `element()` turns one Python value into {"vr": ...,
"Value": [...]}. Stored files become DICOM JSON in noctis_pro.contracts.dicom_json (shared with the metadata cache).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

# VRs that never hold more than one value, so a backslash in them is text (PS3.5 6.2).
_SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})
_NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})


def tag_hex(tag: int) -> str:
    return f"{tag:08X}"


def da(value: dt.date | None) -> str | None:
    return None if value is None else value.strftime("%Y%m%d")


def tm(value: dt.time | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%H%M%S.%f") if value.microsecond else value.strftime("%H%M%S")


def element(vr: str, value: Any) -> dict[str, Any]:
    """One attribute: None, "" and [] give an attribute without Value (present but empty, PS3.18 F.2.5)."""
    values = value if isinstance(value, list) else [value]
    values = [v for v in values if v is not None and v != ""]
    if not values:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    return {"vr": vr, "Value": values}


def element_from_text(vr: str, text: str) -> dict[str, Any]:
    """An attribute from the index's `attrs` text (multi-values joined with a backslash, as in DICOM)."""
    parts = [text] if vr in _SINGLE_VALUED_VRS else text.split("\\")
    values: list[Any] = []
    for part in parts:
        part = part.strip() if vr != "PN" else part
        if part == "":
            continue
        if vr in _NUMBER_VRS:
            try:
                number = float(part)
            except ValueError:
                continue  # a malformed number in the file: leave it out rather than lie about its VR
            values.append(int(number) if vr != "DS" and vr not in {"FL", "FD"} else number)
        else:
            values.append(part)
    return element(vr, values)
