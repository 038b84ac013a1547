"""STOW-RS (PS3.18 10.5): instances POSTed to /studies or /studies/{study}, stored by the SCP over C-STORE.

FastAPI stores nothing itself. The body is streamed part by part into temporary files; each part's identity
(file meta, SOP and study UIDs) is read; then one association to our own SCP (DICOM_SCP_HOST:DICOM_PORT, called
DICOM_AE_TITLE, calling DICOM_STOW_AE_TITLE) C-STOREs every part, proposing the part's own transfer syntax and
sending its data set bytes as they are (pynetdicom's chunked mode). So an upload takes the one ingest path: the
SCP's UID validation, durable write under STORAGE_ROOT/<Study>/<Series>/<SOP>.dcm, receipt row and webhook, and
indexing by pacs.indexing. Success (0x0000) there already means durable with a receipt, so HTTP 200 means stored.

Failure reasons are the C-STORE statuses (PS3.18 table I.2-2), plus: 0xC000 for a part that is not a DICOM
Part-10 file, 0x0122 / 0xC122 when the SCP refused the part's SOP class / transfer syntax, 0x0110 when the
association broke, and 0xA900 for an instance of another study POSTed to /studies/{study}.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, _config
from pynetdicom.dsutils import split_dataset
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser
from starlette.concurrency import run_in_threadpool

from fastapi_app.dicomweb.media import DICOM, DICOM_JSON, _split_outside_quotes
from fastapi_app.errors import ApiError, InvalidRequestError
from noctis_pro.contracts.uids import uid_problem

logger = logging.getLogger(__name__)

# Send a file's data set bytes as stored, in chunks, never decoded and re-encoded: the SCP stores what it receives,
# so the archived instance is byte for byte what the client uploaded. pynetdicom's option is process-wide, so it is
# on only while uploads are being sent (counted: concurrent uploads share it) and other C-STORE senders in the same
# process (tests, tools) keep pynetdicom's usual behaviour.
_chunked_lock = threading.Lock()
_chunked_users = 0


@contextmanager
def _chunked_sends() -> Iterator[None]:
    global _chunked_users
    with _chunked_lock:
        if _chunked_users == 0:
            _config.STORE_SEND_CHUNKED_DATASET = True
        _chunked_users += 1
    try:
        yield
    finally:
        with _chunked_lock:
            _chunked_users -= 1
            if _chunked_users == 0:
                _config.STORE_SEND_CHUNKED_DATASET = False


SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
OUT_OF_RESOURCES = 0xA700
STUDY_MISMATCH = 0xA900  # the standard names no code for it; "data set does not match" is the closest family
CANNOT_UNDERSTAND = 0xC000
WARNINGS = range(0xB000, 0xC000)
MAX_CONTEXTS = 128  # presentation contexts per association (odd ids 1..255)
NETWORK_TIMEOUT_SECONDS = 120
WRITE_BATCH = 1 << 20


class UnsupportedMediaTypeError(ApiError):
    status = 415


class StoreUnavailableError(ApiError):
    """The SCP does not answer: nothing was stored, the client should retry."""

    status = 503
    headers = {"Retry-After": "10"}


@dataclass
class ReceivedPart:
    path: Path
    content_type: str


@dataclass
class PartOutcome:
    """What happened to one part: `status` None still to send, 0x0000 stored, 0xBxxx stored with a warning,
    anything else failed."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    transfer_syntax_uid: str = ""
    status: int | None = None
    reason: str = ""
    unreachable: bool = False

    @property
    def stored(self) -> bool:
        return self.status is not None and (self.status == SUCCESS or self.status in WARNINGS)


# --- the request body ----------------------------------------------------------------------------------------------


def body_boundary(content_type: str | None) -> str | None:
    """The multipart boundary of a STOW body, or None for a single application/dicom body; other media are 415."""
    pieces = [p.strip() for p in _split_outside_quotes(content_type or "", ";")]
    media_type = pieces[0].lower()
    params = {}
    for piece in pieces[1:]:
        name, _, value = piece.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    if media_type == DICOM:
        return None
    if media_type != "multipart/related":
        raise UnsupportedMediaTypeError(
            f"cannot store {media_type or 'a body without Content-Type'}: send "
            f'multipart/related; type="{DICOM}" (or one {DICOM} instance)'
        )
    part_type = params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise UnsupportedMediaTypeError(
            f'cannot store multipart/related; type="{part_type}": only type="{DICOM}" (Part-10 instances)'
        )
    boundary = params.get("boundary", "")
    if not boundary:
        raise InvalidRequestError("multipart/related body without a boundary parameter")
    return boundary


async def parts_receive(
    chunks: AsyncIterator[bytes], *, boundary: str | None, parts: list[ReceivedPart], directory: Path | None = None
) -> None:
    """Stream the body into one temporary file per part, listed in `parts` as they are created (a whole study
    never sits in memory). A malformed multipart body is 400; the caller removes the files (`parts_remove`), also
    when this raises."""
    if boundary is None:
        part = _part_open(parts, directory, DICOM)
        with part.open("wb") as out:
            async for batch in _batches(chunks):
                await run_in_threadpool(out.write, batch)
        return

    state: dict[str, Any] = {"out": None, "field": b"", "value": b"", "headers": {}, "ended": False}

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").strip().lower()] = state["value"].decode("latin-1").strip()
        state["field"] = state["value"] = b""

    def on_headers_finished() -> None:
        content_type = state["headers"].get("content-type", DICOM)
        state["out"] = _part_open(parts, directory, content_type).open("wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["out"].write(data[start:end])

    def on_part_end() -> None:
        if state["out"] is not None:
            state["out"].close()
            state["out"] = None

    def on_end() -> None:
        state["ended"] = True

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
    parser = MultipartParser(boundary.encode("latin-1"), callbacks)  # type: ignore[arg-type]
    try:
        async for batch in _batches(chunks):
            await run_in_threadpool(parser.write, batch)  # the callbacks write the files: not on the event loop
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequestError(f"the multipart/related body cannot be parsed: {exc}") from None
    finally:
        if state["out"] is not None:
            state["out"].close()
    if not state["ended"]:
        raise InvalidRequestError("the multipart/related body ends before its closing boundary")


async def _batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body in pieces of about WRITE_BATCH bytes (one worker-thread hop per piece, not per network read)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) >= WRITE_BATCH:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _part_open(parts: list[ReceivedPart], directory: Path | None, content_type: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="stow-", suffix=".dcm", dir=directory)
    os.close(fd)
    parts.append(ReceivedPart(path=Path(name), content_type=content_type))
    return Path(name)


def parts_remove(parts: Sequence[ReceivedPart]) -> None:
    for part in parts:
        try:
            part.path.unlink(missing_ok=True)
        except OSError as exc:
            logger.error("STOW-RS: temporary file %s not removed: %s", part.path, exc)


# --- identifying and storing the parts -------------------------------------------------------------------------------

_IDENTITY_TAGS = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]


def part_identify(part: ReceivedPart, *, study: str | None) -> PartOutcome:
    """The part's UIDs; `status` stays None for a part to send, else it is the reason it fails here.

    Only what is needed to address the C-STORE is checked here; the SCP validates the rest, as for a modality."""
    outcome = PartOutcome()
    media_type = part.content_type.split(";")[0].strip().lower()
    if media_type != DICOM:
        outcome.status, outcome.reason = CANNOT_UNDERSTAND, f"part of type {media_type!r}, not {DICOM}"
        return outcome
    try:
        _preamble_ensure(part.path)
        file_meta, _offset = split_dataset(part.path)
        ds = pydicom.dcmread(part.path, stop_before_pixels=True, specific_tags=_IDENTITY_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        outcome.status, outcome.reason = CANNOT_UNDERSTAND, f"not a DICOM Part-10 file: {exc}"
        return outcome
    outcome.sop_class_uid = str(ds.get("SOPClassUID", "") or file_meta.get("MediaStorageSOPClassUID", ""))
    outcome.sop_instance_uid = str(ds.get("SOPInstanceUID", "") or file_meta.get("MediaStorageSOPInstanceUID", ""))
    outcome.study_instance_uid = str(ds.get("StudyInstanceUID", ""))
    outcome.series_instance_uid = str(ds.get("SeriesInstanceUID", ""))
    outcome.transfer_syntax_uid = str(file_meta.get("TransferSyntaxUID", ""))
    for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"):
        value = str(file_meta.get(keyword, ""))
        if uid_problem(value) is not None:
            outcome.status, outcome.reason = CANNOT_UNDERSTAND, f"file meta {keyword} {value[:80]!r} is not a UID"
            return outcome
    if study is not None and outcome.study_instance_uid != study:
        outcome.status = STUDY_MISMATCH
        outcome.reason = f"StudyInstanceUID {outcome.study_instance_uid[:80]!r} is not the target study {study}"
    return outcome


def _preamble_ensure(path: Path) -> None:
    """Give a part written without the 128-byte preamble and "DICM" (pydicom's dcmwrite of a data set made from
    scratch, as dicomweb-client sends it) the Part-10 header, so it is stored like any other file."""
    with path.open("rb") as stream:
        head = stream.read(132)
        if head[128:132] == b"DICM" or not head.startswith(b"\x02\x00"):
            return  # a Part-10 file, or no file meta at all (then it fails as not DICOM)
        fixed = path.with_suffix(".part10")
        with fixed.open("wb") as out:
            out.write(b"\x00" * 128 + b"DICM")
            stream.seek(0)
            while chunk := stream.read(1 << 20):
                out.write(chunk)
    fixed.replace(path)


@dataclass(frozen=True)
class ScpAddress:
    host: str
    port: int
    called_ae: str
    calling_ae: str


def parts_store(parts: Sequence[ReceivedPart], outcomes: Sequence[PartOutcome], *, scp: ScpAddress) -> None:
    """C-STORE the parts still marked to send (blocking: run it in a worker thread), setting their statuses.

    One association per MAX_CONTEXTS distinct (SOP class, transfer syntax) pairs, normally one per request."""
    pending = [(part, outcome) for part, outcome in zip(parts, outcomes, strict=True) if outcome.status is None]
    pairs = sorted({(o.sop_class_uid, o.transfer_syntax_uid) for _, o in pending})
    for start in range(0, len(pairs), MAX_CONTEXTS):
        chunk = set(pairs[start : start + MAX_CONTEXTS])
        _association_store([(p, o) for p, o in pending if (o.sop_class_uid, o.transfer_syntax_uid) in chunk], scp)
    for _, outcome in pending:
        if outcome.status is None:
            outcome.status = PROCESSING_FAILURE


def _association_store(items: list[tuple[ReceivedPart, PartOutcome]], scp: ScpAddress) -> None:
    ae = AE(ae_title=scp.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = NETWORK_TIMEOUT_SECONDS
    for pair in sorted({(o.sop_class_uid, o.transfer_syntax_uid) for _, o in items}):
        ae.add_requested_context(*pair)
    assoc = ae.associate(scp.host, scp.port, ae_title=scp.called_ae)
    # Contexts the SCP refused (pynetdicom aborts the association itself when it refused them all).
    refused = {(c.abstract_syntax, c.transfer_syntax[0]): c.result for c in assoc.rejected_contexts}
    accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
    try:
        for part, outcome in items:
            pair = (outcome.sop_class_uid, outcome.transfer_syntax_uid)
            if pair in refused:
                # Result 3: abstract syntax (SOP class) not supported; 4: transfer syntax not supported.
                not_class = refused[pair] == 3
                outcome.status = SOP_CLASS_NOT_SUPPORTED if not_class else TRANSFER_SYNTAX_NOT_SUPPORTED
                outcome.reason = "SOP class not supported" if not_class else "transfer syntax not supported"
            elif not accepted:
                outcome.status, outcome.unreachable = OUT_OF_RESOURCES, True
                outcome.reason = "the archive's DICOM store does not answer"
            elif not assoc.is_established:
                outcome.status, outcome.reason = PROCESSING_FAILURE, "the association ended before this instance"
            else:
                with _chunked_sends():
                    _instance_store(assoc, part, outcome)
    finally:
        if assoc.is_established:
            assoc.release()
    if not accepted and not refused:
        logger.error("STOW-RS: no association with %s@%s:%s", scp.called_ae, scp.host, scp.port)


def _instance_store(assoc: Any, part: ReceivedPart, outcome: PartOutcome) -> None:
    try:
        response = assoc.send_c_store(part.path)
    except (OSError, ValueError, AttributeError) as exc:
        outcome.status, outcome.reason = CANNOT_UNDERSTAND, str(exc)
        return
    if response is None or "Status" not in response:
        outcome.status, outcome.reason = PROCESSING_FAILURE, "no C-STORE response"
        return
    outcome.status = int(response.Status)
    outcome.reason = str(response.get("ErrorComment", "") or "")


async def upload_store(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    study: str | None,
    scp: ScpAddress,
    directory: Path | None,
) -> list[PartOutcome]:
    """A STOW-RS body, part by part: received into files, identified, C-STOREd; the outcome of each part.

    415 / 400 for a body that is not a STOW body; 503 when the SCP did not answer for any part."""
    boundary = body_boundary(content_type)
    parts: list[ReceivedPart] = []
    try:
        await parts_receive(chunks, boundary=boundary, parts=parts, directory=directory)
        if not parts:
            raise InvalidRequestError("the body holds no instance")
        outcomes = await run_in_threadpool(lambda: [part_identify(p, study=study) for p in parts])
        await run_in_threadpool(parts_store, parts, outcomes, scp=scp)
    finally:
        # Off the answer's path (unlinking many files can take a while); errors are logged there.
        asyncio.get_running_loop().run_in_executor(None, parts_remove, list(parts))
    if all(o.unreachable for o in outcomes):
        raise StoreUnavailableError("the archive's DICOM store does not answer; nothing was stored, retry later")
    return outcomes


# --- the response --------------------------------------------------------------------------------------------------


def study_url(base: str, study: str) -> str:
    return f"{base}/studies/{study}"


def store_response(outcomes: Sequence[PartOutcome], *, base: str, study: str | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Store Instances Response Module as DICOM JSON): 200 all stored without warnings, 202 some
    failed or warned, 409 none stored (PS3.18 table 10.5.3-1)."""
    stored = [o for o in outcomes if o.stored]
    failed = [o for o in outcomes if not o.stored]
    studies = {o.study_instance_uid for o in stored}
    target = study if study is not None else (next(iter(studies)) if len(studies) == 1 else None)
    body: dict[str, Any] = {"00081190": _ur(study_url(base, target) if target else None)}
    if failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": _ui(o.sop_class_uid),
                    "00081155": _ui(o.sop_instance_uid),
                    "00081197": {"vr": "US", "Value": [o.status if o.status is not None else PROCESSING_FAILURE]},
                }
                for o in failed
            ],
        }
    if stored:
        items = []
        for o in stored:
            item = {
                "00081150": _ui(o.sop_class_uid),
                "00081155": _ui(o.sop_instance_uid),
                "00081190": _ur(
                    f"{study_url(base, o.study_instance_uid)}/series/{o.series_instance_uid}"
                    f"/instances/{o.sop_instance_uid}"
                ),
            }
            if o.status != SUCCESS:
                item["00081196"] = {"vr": "US", "Value": [o.status]}
            items.append(item)
        body["00081199"] = {"vr": "SQ", "Value": items}
    if not stored:
        return 409, body
    warned = any(o.status != SUCCESS for o in stored)
    return (202 if failed or warned else 200), body


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _ur(value: str | None) -> dict[str, Any]:
    return {"vr": "UR", "Value": [value]} if value else {"vr": "UR"}


RESPONSE_MEDIA_TYPE = DICOM_JSON
