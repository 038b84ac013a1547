"""WADO-RS (PS3.18 10.4): stored files as they are, their metadata as DICOM JSON, frames and bulk data.

Files are read where the index says (pacs_instance.path under STORAGE_ROOT). Whole files are streamed in
chunks; metadata is read with large values deferred; frames are decoded one at a time by pydicom.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array
from pydicom.tag import Tag
from pydicom.uid import UID

from fastapi_app import sql
from fastapi_app.dicomweb.media import (
    DICOM,
    FilePart,
    NotAcceptableError,
    StoredFileMissingError,
    UnknownResourceError,
)
from fastapi_app.errors import InvalidRequestError
from noctis_pro.contracts.dicom_json import element_at, instance_json_bytes, tag_path_text

logger = logging.getLogger(__name__)
PIXEL_DATA = 0x7FE00010
MAX_FRAMES_PER_REQUEST = 10_000
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")


def stored_path(storage_root: Path, instance: sql.StoredInstance) -> Path:
    """The instance's file; a path that leaves STORAGE_ROOT or a missing file is the operator's problem (500)."""
    root = storage_root.resolve()
    path = (root / instance.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        logger.error("instance %s: stored file %r is missing or outside STORAGE_ROOT", instance.sop_instance_uid, path)
        raise StoredFileMissingError(f"the stored file of instance {instance.sop_instance_uid} is missing")
    return path


def instance_url(base: str, instance: sql.StoredInstance) -> str:
    return (
        f"{base}/studies/{instance.study_instance_uid}/series/{instance.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )


def file_parts(storage_root: Path, instances: Sequence[sql.StoredInstance], *, base: str) -> list[FilePart]:
    """One multipart part per instance, checked on disk before the answer starts (a stream cannot turn into 500)."""
    parts = []
    for instance in instances:
        path = stored_path(storage_root, instance)
        parts.append(
            FilePart(
                path=path,
                size=path.stat().st_size,
                content_type=f"{DICOM}; transfer-syntax={instance.transfer_syntax_uid}",
                location=instance_url(base, instance),
            )
        )
    return parts


def tag_path_parse(text: str) -> tuple[int | str, ...]:
    """`7FE00010` or `00880200/0/7FE00010` (tag, item index, tag, ...) as a tag path; malformed is 400."""
    steps = text.strip("/").split("/")
    path: list[int | str] = []
    for position, step in enumerate(steps):
        if position % 2 == 0 and _TAG_RE.fullmatch(step):
            path.append(int(step, 16))
        elif position % 2 == 1 and step.isdigit() and len(step) < 7:
            path.append(int(step))
        else:
            raise InvalidRequestError(f"bulk data path {text[:80]!r} is not tag/item/tag...")
    if len(path) % 2 == 0:
        raise InvalidRequestError(f"bulk data path {text[:80]!r} does not end with a tag")
    return tuple(path)


def metadata_paths(
    storage_root: Path, instances: Sequence[sql.StoredInstance]
) -> list[tuple[sql.StoredInstance, Path]]:
    """The instances' files, checked before an answer starts (a stream cannot turn into 500)."""
    return [(instance, stored_path(storage_root, instance)) for instance in instances]


def metadata_items(paths: Sequence[tuple[sql.StoredInstance, Path]], *, base: str) -> Iterator[bytes]:
    """One DICOM JSON object per instance, read from its file (in a worker thread)."""
    for instance, path in paths:
        yield instance_json_bytes(
            path,
            base=base,
            study_uid=instance.study_instance_uid,
            series_uid=instance.series_instance_uid,
            sop_uid=instance.sop_instance_uid,
        )


def metadata_stream(storage_root: Path, instances: Sequence[sql.StoredInstance], *, base: str) -> Iterator[bytes]:
    """A JSON array with one DICOM JSON object per instance, built one file at a time (in a worker thread)."""
    paths = metadata_paths(storage_root, instances)

    def body() -> Iterator[bytes]:
        yield b"["
        for position, item in enumerate(metadata_items(paths, base=base)):
            yield (b"," if position else b"") + item
        yield b"]"

    return body()


def frame_numbers_parse(text: str, *, number_of_frames: int) -> list[int]:
    """`1,3,5` (1-based, PS3.18 10.4.1.1.4) within the instance's frames; anything else is 400."""
    numbers = []
    for piece in text.replace("%2C", ",").split(","):
        piece = piece.strip()
        if not piece.isdigit() or len(piece) > 9:
            raise InvalidRequestError(f"frame list {text[:80]!r}: {piece[:20]!r} is not a frame number")
        numbers.append(int(piece))
    if len(numbers) > MAX_FRAMES_PER_REQUEST:
        raise InvalidRequestError(f"frame list asks for more than {MAX_FRAMES_PER_REQUEST} frames")
    for number in numbers:
        if not 1 <= number <= number_of_frames:
            raise InvalidRequestError(f"frame {number} is out of range: the instance has {number_of_frames} frame(s)")
    return numbers


def frames_decode(path: Path, numbers: Sequence[int], *, number_of_frames: int) -> list[bytes]:
    """The frames' pixel data as pydicom decodes it (little endian, samples interleaved), one frame at a time."""
    frames = []
    for number in numbers:
        try:
            array: np.ndarray = pixel_array(str(path), index=number - 1 if number_of_frames > 1 else None)
        except AttributeError:
            raise UnknownResourceError(f"instance {path.stem} has no pixel data") from None
        except (RuntimeError, NotImplementedError, ValueError) as exc:
            # No decoder for its transfer syntax, or data the decoder refuses: the file itself is still served.
            logger.warning("instance %s: frame %d cannot be decoded: %s", path.stem, number, exc)
            raise NotAcceptableError(
                f"the frames of instance {path.stem} cannot be decoded here; retrieve the instance as stored"
            ) from None
        frames.append(np.ascontiguousarray(array).tobytes())
    return frames


def frames_as_stored(path: Path, numbers: Sequence[int], *, number_of_frames: int) -> list[bytes]:
    """The frames' encapsulated bytes exactly as stored (compressed transfer syntaxes only)."""
    ds = pydicom.dcmread(path)
    stored = list(generate_frames(ds.PixelData, number_of_frames=number_of_frames))
    return [stored[number - 1] for number in numbers]


def bulkdata_read(path: Path, tag_path: Sequence[int | str], *, number_of_frames: int) -> bytes:
    """A bulk value's bytes. Compressed pixel data is decoded: bulk data is served uncompressed, like frames."""
    ds = pydicom.dcmread(path)
    top_level_pixels = len(tag_path) == 1 and Tag(tag_path[0]) == PIXEL_DATA
    if top_level_pixels and UID(ds.file_meta.TransferSyntaxUID).is_compressed:
        return b"".join(frames_decode(path, range(1, number_of_frames + 1), number_of_frames=number_of_frames))
    elem = element_at(ds, tag_path)
    if elem is None or not isinstance(elem.value, bytes | bytearray):
        raise UnknownResourceError(f"no bulk data at {tag_path_text(tag_path)}")
    return bytes(elem.value)
