"""DICOM UID rules (PS3.5 9.1): digits and dots, at most 64 characters, no empty or zero-padded component.

A UID becomes a path component on disk, so this check is also what keeps `../x` out of STORAGE_ROOT.
"""

import re

MAX_UID_LENGTH = 64
# Each component is "0" or a number without a leading zero.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def uid_is_valid(value: str) -> bool:
    return 0 < len(value) <= MAX_UID_LENGTH and _UID_RE.fullmatch(value) is not None


def uid_problem(value: str | None) -> str | None:
    """Why `value` is not a valid UID, or None when it is."""
    if value is None or value == "":
        return "missing"
    if len(value) > MAX_UID_LENGTH:
        return f"longer than {MAX_UID_LENGTH} characters"
    if _UID_RE.fullmatch(value) is None:
        return "not digits and dots"
    return None
