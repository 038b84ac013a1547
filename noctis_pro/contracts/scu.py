"""The archive as a DICOM SCU towards a remote node: C-ECHO, C-FIND and C-MOVE (pynetdicom), without Django.

It lives beside the contracts so both sides share one implementation: noctis_pro.pacs.nodes (UI, CLI, Celery)
and fastapi_app/routers/nodes.py (echo and query answered inside the request). C-STORE SCU is in
noctis_pro.pacs.forwarding, which needs the index. Everything here blocks: async callers use a thread.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AE
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from noctis_pro.contracts.uids import uid_problem

ECHO_TIMEOUT_SECONDS = 5.0
FIND_TIMEOUT_SECONDS = 30.0
MOVE_TIMEOUT_SECONDS = 300.0  # between two C-MOVE responses: a sub-operation can take a while
MAX_FIND_RESULTS = 500

LEVELS = ("STUDY", "SERIES")
# Keys a caller may match on, per level; every other return key is asked for empty (universal matching).
STUDY_FILTERS = (
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "StudyDate",
    "ModalitiesInStudy",
    "StudyDescription",
    "StudyInstanceUID",
)
SERIES_FILTERS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription")
STUDY_RETURN_KEYS = (
    *STUDY_FILTERS,
    "PatientBirthDate",
    "PatientSex",
    "StudyTime",
    "ReferringPhysicianName",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_RETURN_KEYS = (*SERIES_FILTERS, "BodyPartExamined", "NumberOfSeriesRelatedInstances")
_DATE_OR_RANGE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")


class NodeUnreachableError(Exception):
    """No association with the node (refused, rejected, timed out): the caller may try again later."""


class QueryInvalidError(ValueError):
    """A query the node would not understand; the message names the key."""


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class EchoResult:
    ok: bool
    message: str
    status: int | None = None
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MoveProgress:
    remaining: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    status: int | None = None  # the final status, once known
    error: str = ""
    failed_uids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (0x0000, 0xB000) and self.failed == 0


def _ae(calling_ae: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = timeout
    ae.dimse_timeout = timeout
    return ae


def _status(ds: Dataset | None) -> int | None:
    return int(ds.Status) if ds is not None and "Status" in ds else None


def echo(*, calling_ae: str, peer: Peer, timeout: float = ECHO_TIMEOUT_SECONDS) -> EchoResult:
    """C-ECHO `peer`; never raises for a network problem, the result says what happened."""
    ae = _ae(calling_ae, timeout)
    ae.add_requested_context(Verification)
    started = time.monotonic()
    try:
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    except (OSError, ValueError) as exc:
        return EchoResult(ok=False, message=f"{peer}: {exc}")
    elapsed = lambda: round((time.monotonic() - started) * 1000, 1)  # noqa: E731
    if not assoc.is_established:
        why = "association rejected" if assoc.is_rejected else "no answer (refused, unreachable or timed out)"
        return EchoResult(ok=False, message=f"{peer}: {why}", elapsed_ms=elapsed())
    try:
        status = _status(assoc.send_c_echo())
    finally:
        if assoc.is_established:
            assoc.release()
    if status == 0x0000:
        return EchoResult(ok=True, message=f"{peer}: C-ECHO succeeded", status=status, elapsed_ms=elapsed())
    shown = "no response" if status is None else f"status 0x{status:04X}"
    return EchoResult(ok=False, message=f"{peer}: C-ECHO failed, {shown}", status=status, elapsed_ms=elapsed())


def _filter_problem(keyword: str, value: str) -> str | None:
    if len(value) > 64 * 10:
        return "is too long"
    if any(ord(c) < 32 and c not in "\t" for c in value):
        return "contains control characters"
    if keyword == "StudyDate" and value and not _DATE_OR_RANGE.fullmatch(value):
        return "must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD"
    if keyword in ("StudyInstanceUID", "SeriesInstanceUID") and value:
        for uid in value.split("\\"):
            if (problem := uid_problem(uid)) is not None:
                return f"is not a UID ({problem})"
    return None


def find_identifier(*, level: str, filters: dict[str, str]) -> Dataset:
    """The C-FIND identifier for `filters` at `level`; QueryInvalidError names an unknown key or bad value."""
    if level not in LEVELS:
        raise QueryInvalidError(f"level must be one of {', '.join(LEVELS)}")
    allowed, keys = (STUDY_FILTERS, STUDY_RETURN_KEYS) if level == "STUDY" else (SERIES_FILTERS, SERIES_RETURN_KEYS)
    for keyword, value in filters.items():
        if keyword not in allowed:
            raise QueryInvalidError(f"{keyword} cannot be matched at {level} level (allowed: {', '.join(allowed)})")
        if (problem := _filter_problem(keyword, value)) is not None:
            raise QueryInvalidError(f"{keyword} {problem}")
    if level == "SERIES" and not filters.get("StudyInstanceUID"):
        raise QueryInvalidError("StudyInstanceUID is required at SERIES level")
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in keys:
        setattr(ds, keyword, filters.get(keyword, ""))
    return ds


def _as_json(ds: Dataset, keys: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for keyword in keys:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if isinstance(value, MultiValue | list | tuple):
            out[keyword] = "\\".join(str(v) for v in value)
        else:
            out[keyword] = str(value)
    return out


def find(
    *,
    calling_ae: str,
    peer: Peer,
    level: str,
    filters: dict[str, str],
    limit: int = MAX_FIND_RESULTS,
    timeout: float = FIND_TIMEOUT_SECONDS,
) -> list[dict[str, str]]:
    """Study Root C-FIND at STUDY or SERIES level; each match as {keyword: text}. At most `limit` matches (then
    the association is aborted). NodeUnreachableError without an association, RuntimeError on a failure status."""
    identifier = find_identifier(level=level, filters=filters)
    keys = STUDY_RETURN_KEYS if level == "STUDY" else SERIES_RETURN_KEYS
    ae = _ae(calling_ae, timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise NodeUnreachableError(f"no association with {peer}")
    matches: list[dict[str, str]] = []
    try:
        for status, found in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            code = _status(status)
            if code in (0xFF00, 0xFF01) and found is not None:
                matches.append(_as_json(found, keys))
                if len(matches) >= limit:
                    assoc.abort()  # enough: the peer stops on the abort
                    break
            elif code == 0x0000:
                break
            else:
                shown = "no response" if code is None else f"status 0x{code:04X}"
                raise RuntimeError(f"C-FIND on {peer} failed: {shown}")
    finally:
        if assoc.is_established:
            assoc.release()
    return matches


def move(
    *,
    calling_ae: str,
    peer: Peer,
    destination_ae: str,
    study_uid: str,
    series_uid: str = "",
    progress: Callable[[MoveProgress], None] | None = None,
    timeout: float = MOVE_TIMEOUT_SECONDS,
) -> MoveProgress:
    """Study Root C-MOVE of a study (or one series) from `peer` to `destination_ae`; `progress` sees every
    pending response. NodeUnreachableError without an association; the returned final status says the rest."""
    for what, uid in (("study UID", study_uid), ("series UID", series_uid)):
        if (uid or what == "study UID") and (problem := uid_problem(uid)) is not None:
            raise QueryInvalidError(f"{what} {problem}")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    identifier.StudyInstanceUID = study_uid
    if series_uid:
        identifier.SeriesInstanceUID = series_uid
    ae = _ae(calling_ae, timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise NodeUnreachableError(f"no association with {peer}")
    state = MoveProgress()
    try:
        for status, found in assoc.send_c_move(identifier, destination_ae, StudyRootQueryRetrieveInformationModelMove):
            code = _status(status)
            if status is not None:
                state.remaining = status.get("NumberOfRemainingSuboperations", state.remaining)
                state.completed = int(status.get("NumberOfCompletedSuboperations", state.completed) or 0)
                state.failed = int(status.get("NumberOfFailedSuboperations", state.failed) or 0)
                state.warning = int(status.get("NumberOfWarningSuboperations", state.warning) or 0)
            if code in (0xFF00, 0xFF01):
                if progress is not None:
                    progress(state)
                continue
            state.status = code
            if code is None:
                state.error = "the node stopped answering"
            elif code not in (0x0000, 0xB000):
                state.error = f"C-MOVE failed with status 0x{code:04X}" + _move_status_hint(code)
            if found is not None and "FailedSOPInstanceUIDList" in found:
                value = found.FailedSOPInstanceUIDList
                state.failed_uids = [str(v) for v in (value if isinstance(value, MultiValue | list) else [value]) if v]
            break
    finally:
        if assoc.is_established:
            assoc.release()
    if state.status is None and not state.error:
        state.error = "the node ended the C-MOVE without a final status"
    return state


def _move_status_hint(code: int) -> str:
    if code == 0xA801:
        return " (move destination unknown: register this archive's AE title on the node)"
    if code in (0xA701, 0xA702):
        return " (the node is out of resources)"
    if code == 0xFE00:
        return " (cancelled)"
    return ""
