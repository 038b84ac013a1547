"""A stored Part-10 file as DICOM JSON (PS3.18 F.2), with large binary values as BulkDataURIs, and a series' metadata
made once for the WADO-RS metadata cache. Shared by FastAPI (serving) and Django (pacs.metadata, building the
cache), so both give the same JSON by construction.

BulkDataURIs in the cache are relative, "/studies/{s}/series/{se}/instances/{i}/bulkdata/{tag path}": the DICOMweb
root of the request (or NOCTIS_PUBLIC_BASE_URL) is put in front when served (`bulk_data_uris_absolute`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

# Values longer than this (in bytes) of these VRs are served at /bulkdata instead of inline (PS3.18 F.2.7).
BULK_DATA_THRESHOLD = 1024
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, PIXEL_DATA})  # float, double float and integer pixel data
JSON_SEPARATORS = (",", ":")
# Inside JSON text a quote in a value is always escaped, so this byte string only ever starts a BulkDataURI value.
_RELATIVE_BULK_DATA_URI = b'"BulkDataURI":"/studies/'


def tag_hex(tag: int) -> str:
    return f"{tag:08X}"


def tag_path_text(tag_path: Sequence[int | str]) -> str:
    return "/".join(f"{step:08X}" if position % 2 == 0 else str(step) for position, step in enumerate(tag_path))


def instance_path(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """The instance's path under the DICOMweb root."""
    return f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"


def instance_json_bytes(path: Path, *, base: str, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
    """One instance's metadata as compact JSON bytes, its BulkDataURIs under `base` ("" for relative ones)."""
    prefix = base + instance_path(study_uid, series_uid, sop_uid) + "/bulkdata/"
    item = instance_metadata(path, bulk_data_uri=lambda steps: prefix + tag_path_text(steps))
    return json.dumps(item, separators=JSON_SEPARATORS).encode()


def series_items_json(items: Iterable[bytes]) -> bytes:
    """Instances' JSON objects joined as the inside of a JSON array (no brackets, so series concatenate)."""
    return b",".join(items)


def bulk_data_uris_absolute(items: bytes, *, base: str) -> bytes:
    """Relative BulkDataURIs ("/studies/...") made absolute under `base`, the DICOMweb root."""
    return items.replace(_RELATIVE_BULK_DATA_URI, b'"BulkDataURI":' + json.dumps(base).encode()[:-1] + b"/studies/")


BulkDataUri = Callable[[Sequence[int | str]], str]


def instance_metadata(path: Path, *, bulk_data_uri: BulkDataUri) -> dict[str, Any]:
    """The JSON object of a stored instance's data set (file meta left out, as in pydicom's to_json_dict).

    Pixel data is never read: the file is parsed up to it, and its element header (tag and VR) gives the
    {"vr", "BulkDataURI"} entry; compressed pixel data, whose undefined length would otherwise be scanned to
    its end, costs nothing either. Other binary values above BULK_DATA_THRESHOLD are deferred by pydicom and
    become BulkDataURIs too, with `bulk_data_uri(tag_path)`, tag_path being (tag, item index, tag, ...).
    Deflated and big-endian files (rare, retired) are parsed whole.
    """
    with path.open("rb") as stream:
        ds = pydicom.dcmread(stream, defer_size=BULK_DATA_THRESHOLD, stop_before_pixels=True)
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax is None or syntax.is_deflated or not syntax.is_little_endian:
            stream.seek(0)
            return _dataset_json(pydicom.dcmread(stream, defer_size=BULK_DATA_THRESHOLD), (), bulk_data_uri)
        pixels = _pixel_element_at(stream, ds, implicit_vr=syntax.is_implicit_VR)
        out = _dataset_json(ds, (), bulk_data_uri)
    if pixels is not None:
        tag, vr = pixels
        out[tag_hex(tag)] = {"vr": vr, "BulkDataURI": bulk_data_uri((tag,))}
    return dict(sorted(out.items()))


def _pixel_element_at(stream: BinaryIO, ds: Dataset, *, implicit_vr: bool) -> tuple[int, str] | None:
    """(tag, VR) of the pixel data element where pydicom stopped (stop_before_pixels leaves the file there)."""
    head = stream.read(6)
    if len(head) < 6:
        return None
    group, element = struct.unpack("<HH", head[:4])
    tag = (group << 16) | element
    if tag not in PIXEL_TAGS:
        return None
    if not implicit_vr:
        return tag, head[4:6].decode("ascii", "replace")
    if tag != PIXEL_DATA:
        return tag, str(dictionary_VR(tag))
    bits = ds.get("BitsAllocated")
    return tag, "OW" if bits is None or int(bits) > 8 else "OB"  # pydicom's rule for implicit VR pixel data


def _dataset_json(ds: Dataset, parents: tuple[int | str, ...], bulk_data_uri: BulkDataUri) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag)
        tag_path = (*parents, int(tag))
        if isinstance(raw, RawDataElement) and _is_bulk(raw, ds):
            out[tag_hex(tag)] = {"vr": _binary_vr(raw, ds), "BulkDataURI": bulk_data_uri(tag_path)}
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            items = [_dataset_json(item, (*tag_path, index), bulk_data_uri) for index, item in enumerate(elem.value)]
            out[tag_hex(tag)] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        if elem.VR in BULK_VRS and not elem.is_empty and len(elem.value) > BULK_DATA_THRESHOLD:
            out[tag_hex(tag)] = {"vr": elem.VR, "BulkDataURI": bulk_data_uri(tag_path)}
            continue
        out[tag_hex(tag)] = elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=BULK_DATA_THRESHOLD)
    return out


def _raw_vr(raw: RawDataElement) -> str:
    if raw.VR:
        return str(raw.VR)
    try:
        return str(dictionary_VR(raw.tag))
    except KeyError:
        return "UN"


def _is_bulk(raw: RawDataElement, ds: Dataset) -> bool:
    vr = _raw_vr(raw)
    if vr != "UN" and not any(v in BULK_VRS for v in vr.split(" or ")):
        return False
    return raw.length == UNDEFINED_LENGTH or raw.length > BULK_DATA_THRESHOLD


def _binary_vr(raw: RawDataElement, ds: Dataset) -> str:
    """The VR of a bulk value; "OB or OW" is settled as pydicom does for pixel data (by BitsAllocated)."""
    vr = _raw_vr(raw)
    if " or " not in vr:
        return vr
    if raw.length == UNDEFINED_LENGTH:
        return "OB"  # encapsulated (compressed) pixel data is always OB
    bits = ds.get("BitsAllocated")
    return "OW" if bits is None or int(bits.value if isinstance(bits, DataElement) else bits) > 8 else "OB"


def element_at(ds: Dataset, tag_path: Sequence[int | str]) -> DataElement | None:
    """The element a BulkDataURI's tag path names (tag, item index, tag, ...), or None."""
    current: Dataset = ds
    for position, step in enumerate(tag_path):
        if position % 2 == 0:
            tag: BaseTag = Tag(step)
            if tag not in current:
                return None
            elem = current[tag]
            if position == len(tag_path) - 1:
                return elem
            if elem.VR != "SQ":
                return None
        else:
            index = int(step)
            if index >= len(elem.value):
                return None
            current = elem.value[index]
    return None
