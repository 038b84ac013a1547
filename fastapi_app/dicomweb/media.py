"""Content negotiation (Accept) and multipart/related bodies for DICOMweb, and DICOMweb's errors."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi_app.errors import ApiError

DICOM_JSON = "application/dicom+json"
DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
CHUNK_SIZE = 1 << 20


class NotAcceptableError(ApiError):
    status = 406


class UnknownResourceError(ApiError):
    status = 404


class RangeNotSatisfiableError(ApiError):
    status = 416

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.headers = {"Content-Range": f"bytes */{size}"}


class StoredFileMissingError(ApiError):
    """The index names a file that is not in storage: an operator problem, not the client's."""

    status = 500


@dataclass(frozen=True)
class MediaRange:
    type: str  # "multipart/related", "*/*", ...
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def covers(self, media_type: str) -> bool:
        main, _, sub = self.type.partition("/")
        want_main, _, want_sub = media_type.partition("/")
        return main == "*" or (main == want_main and sub in {"*", want_sub})


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def accept_parse(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, best first; no header means */*. Ranges with q=0 are dropped."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = []
    for item in _split_outside_quotes(header, ","):
        pieces = [p.strip() for p in _split_outside_quotes(item, ";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif name:
                params[name] = value
        if q > 0:
            ranges.append(MediaRange(pieces[0].lower(), params, q))
    return sorted(ranges, key=lambda r: -r.q)


def json_accepted(header: str | None) -> None:
    """QIDO and metadata answer application/dicom+json (or plain JSON); anything else is 406."""
    for media_range in accept_parse(header):
        if media_range.covers(DICOM_JSON) or media_range.covers("application/json"):
            return
    raise NotAcceptableError(f"cannot answer {header!r}: only {DICOM_JSON} and application/json")


def multipart_accepted(header: str | None, *, part_type: str, transfer_syntaxes: Iterable[str]) -> None:
    """A multipart/related answer whose parts are `part_type`, in the given transfer syntaxes, as stored.

    A range asking for another transfer syntax than the stored one does not match (nothing is transcoded);
    `transfer-syntax=*` or no transfer-syntax parameter takes them as they are.
    """
    stored = set(transfer_syntaxes)
    for media_range in accept_parse(header):
        if media_range.type in {"*/*", "multipart/*"}:
            return
        if media_range.type != "multipart/related":
            continue
        if not MediaRange(media_range.params.get("type", part_type).lower()).covers(part_type):
            continue
        syntax = media_range.params.get("transfer-syntax", "*")
        if syntax == "*" or stored <= {syntax}:
            return
    raise NotAcceptableError(
        f'cannot answer {header!r}: this resource is multipart/related; type="{part_type}"'
        f" in its stored transfer syntax ({', '.join(sorted(stored))})"
    )


# Compressed frames are served as stored in these media types (PS3.18 table 8.7.3-5); the first is the one named.
COMPRESSED_FRAME_TYPES: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.5": ("image/dicom-rle", "image/x-dicom-rle"),
    "1.2.840.10008.1.2.4.50": ("image/jpeg",),
    "1.2.840.10008.1.2.4.51": ("image/jpeg",),
    "1.2.840.10008.1.2.4.57": ("image/jpeg",),
    "1.2.840.10008.1.2.4.70": ("image/jpeg",),
    "1.2.840.10008.1.2.4.80": ("image/jls", "image/x-jls"),
    "1.2.840.10008.1.2.4.81": ("image/jls", "image/x-jls"),
    "1.2.840.10008.1.2.4.90": ("image/jp2",),
    "1.2.840.10008.1.2.4.91": ("image/jp2",),
    "1.2.840.10008.1.2.4.92": ("image/jpx",),
    "1.2.840.10008.1.2.4.93": ("image/jpx",),
    "1.2.840.10008.1.2.4.201": ("image/jphc",),
    "1.2.840.10008.1.2.4.202": ("image/jphc",),
    "1.2.840.10008.1.2.4.203": ("image/jphc",),
}


@dataclass(frozen=True)
class FrameRepresentation:
    part_type: str
    transfer_syntax: str

    @property
    def compressed(self) -> bool:
        return self.part_type != OCTET_STREAM


def frames_representation(header: str | None, *, stored_syntax: str) -> FrameRepresentation:
    """Uncompressed frames (application/octet-stream), or the stored compressed ones when the client's Accept
    names the stored syntax's media type; the first acceptable range in the client's order wins."""
    uncompressed = FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)
    stored_types = COMPRESSED_FRAME_TYPES.get(stored_syntax, ())
    for media_range in accept_parse(header):
        if media_range.type in {"*/*", "multipart/*"}:
            return uncompressed
        if media_range.type != "multipart/related":
            continue
        part_type = media_range.params.get("type", OCTET_STREAM).lower()
        syntax = media_range.params.get("transfer-syntax")
        wanted = MediaRange(part_type)
        if wanted.covers(OCTET_STREAM) and syntax in {None, "*", EXPLICIT_VR_LITTLE_ENDIAN}:
            return uncompressed  # also type="*/*", which dicomweb-client sends by default
        if any(wanted.covers(t) for t in stored_types) and syntax in {None, "*", stored_syntax}:
            return FrameRepresentation(stored_types[0], stored_syntax)
    offer = f" or {stored_types[0]} ({stored_syntax})" if stored_types else ""
    raise NotAcceptableError(
        f'cannot answer {header!r}: frames are multipart/related; type="{OCTET_STREAM}" (uncompressed){offer}'
    )


def boundary_new() -> str:
    return secrets.token_hex(16)


def multipart_content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    syntax = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{part_type}"{syntax}; boundary={boundary}'


def _part_head(
    boundary: str, content_type: str, length: int, location: str | None, content_range: str | None = None
) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}", f"Content-Length: {length}"]
    if location:
        lines.append(f"Content-Location: {location}")
    if content_range:
        lines.append(f"Content-Range: {content_range}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass(frozen=True)
class FilePart:
    path: Path
    size: int
    content_type: str
    location: str | None = None


def multipart_files_length(parts: list[FilePart], boundary: str) -> int:
    body = sum(len(_part_head(boundary, p.content_type, p.size, p.location)) + p.size + 2 for p in parts)
    return body + len(f"--{boundary}--\r\n")


def multipart_files(parts: list[FilePart], boundary: str) -> Iterator[bytes]:
    """The body, read file by file in CHUNK_SIZE pieces (Starlette runs this generator in a worker thread)."""
    for part in parts:
        yield _part_head(boundary, part.content_type, part.size, part.location)
        with part.path.open("rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def multipart_bytes(parts: list[tuple[str, bytes]], boundary: str, *, content_range: str | None = None) -> bytes:
    body = bytearray()
    for content_type, data in parts:
        body += _part_head(boundary, content_type, len(data), None, content_range)
        body += data
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body)


def byte_range_parse(header: str | None, *, size: int) -> tuple[int, int] | None:
    """The one byte range of a `Range: bytes=a-b | a- | -n` header as (first, last) inclusive, or None for the
    whole value (no header, or one this server ignores as RFC 9110 14.2 allows: other units, several ranges)."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash or not (first_text.isdigit() or first_text == "") or not (last_text.isdigit() or last_text == ""):
        return None
    if first_text == "":
        if not last_text or int(last_text) == 0:
            raise RangeNotSatisfiableError(f"range {header[:40]!r} asks for no bytes", size=size)
        return max(0, size - int(last_text)), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or first > last:
        raise RangeNotSatisfiableError(f"range {header[:40]!r} is outside the value's {size} bytes", size=size)
    return first, last
