"""The DICOM JSON model (PS3.18 F.2) for index rows and for stored files.

`element()` turns one Python value into {"vr": ..., "Value": [...]}; `instance_metadata()` turns a stored
Part-10 file into the JSON object of its data set, with large binary values replaced by a BulkDataURI.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable, Sequence
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


# --- stored files ------------------------------------------------------------------------------------------------

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
