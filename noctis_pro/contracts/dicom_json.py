"""A stored Part-10 file as DICOM JSON (PS3.18 F.2), with large binary values as BulkDataURIs, and a series' metadata
made once for the WADO-RS metadata cache. Shared by FastAPI (serving) and Django (pacs.metadata, building the
cache), so both give the same JSON by construction.

BulkDataURIs in the cache are relative, "/studies/{s}/series/{se}/instances/{i}/bulkdata/{tag path}": the DICOMweb
root of the request (or NOCTIS_PUBLIC_BASE_URL) is put in front when served (`bulk_data_uris_absolute`).
"""

from __future__ import annotations

import base64
import functools
import json
import math
import mmap
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)

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

    Read by `_fast_instance_metadata` straight from the file's bytes (no pydicom objects), which gives the JSON
    `instance_metadata_pydicom` gives for the files it knows (little endian, default, Latin-1 or UTF-8 character
    set, well-formed values); anything else it meets (see `_Unusual`) sends the file to `instance_metadata_pydicom`.
    So does any error of the fast reader (a truncated file, a bug): it may cost time, never another answer or error.
    """
    with path.open("rb") as stream:
        try:
            return _fast_instance_metadata(stream, bulk_data_uri)
        except Exception:  # _Unusual, or a file pydicom reads (or rejects) its own way
            stream.seek(0)
        return _pydicom_instance_metadata(stream, bulk_data_uri)


def instance_metadata_pydicom(path: Path, *, bulk_data_uri: BulkDataUri) -> dict[str, Any]:
    """`instance_metadata` as pydicom makes it (the reference the fast reader is tested against, and its fallback)."""
    with path.open("rb") as stream:
        return _pydicom_instance_metadata(stream, bulk_data_uri)


def _pydicom_instance_metadata(stream: BinaryIO, bulk_data_uri: BulkDataUri) -> dict[str, Any]:
    """Pixel data is never read: the file is parsed up to it, and its element header (tag and VR) gives the
    {"vr", "BulkDataURI"} entry; compressed pixel data, whose undefined length would otherwise be scanned to
    its end, costs nothing either. Other binary values above BULK_DATA_THRESHOLD are deferred by pydicom and
    become BulkDataURIs too, with `bulk_data_uri(tag_path)`, tag_path being (tag, item index, tag, ...).
    Deflated and big-endian files (rare, retired) are parsed whole.
    """
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


# The fast reader: the same JSON as `_pydicom_instance_metadata` straight from the file's bytes. Each rule below
# mirrors what pydicom 3 does for that case (filereader, values.convert_value, DataElement.to_json_dict,
# jsonrep.convert_to_python_number); whatever is not covered raises _Unusual and the file takes pydicom's path.


class _Unusual(Exception):
    """Something the fast reader does not convert exactly as pydicom does (the file is read by pydicom)."""


_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_CHARSET, _BITS_ALLOCATED, _PIXEL_REPRESENTATION = 0x00080005, 0x00280100, 0x00280103
_LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_KNOWN_VRS = _LONG_LENGTH_VRS | frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST", "TM"}
    | {"UI", "UL", "US"}
)
# Specific Character Set values whose text decodes with one Python codec and no code extensions.
_CHARSETS = {"": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_NUMBER_SIZES = {vr: struct.calcsize("<" + code) for vr, code in _NUMBER_FORMATS.items()}
_MULTI_STRING_VRS = frozenset({"AS", "CS", "DA", "DT", "TM"})  # values.multi_string: rstrip, split
_TEXT_VRS = frozenset({"SH", "LO", "UC"})  # values.convert_text: split, rstrip each
_SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT"})  # values.convert_single_string: never split
_DS = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IS = re.compile(r"[+-]?\d+")
_AMBIGUOUS_US_SS = frozenset(
    {0x00189810, 0x00221452, 0x00280104, 0x00280105, 0x00280106, 0x00280107, 0x00280108, 0x00280109}
    | {0x00280110, 0x00280111, 0x00280120, 0x00280121, 0x00281101, 0x00281102, 0x00281103, 0x00283002}
    | {0x00409211, 0x00409216, 0x00603004, 0x00603006}
)  # pydicom.filewriter._AMBIGUOUS_US_SS_TAGS
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})  # pydicom fixes their first value
_HEADER = struct.Struct("<HH2sH")
_IMPLICIT_HEADER = struct.Struct("<HHL")
_LONG_LENGTH = struct.Struct("<L")
_SHORT = struct.Struct("<H")


@functools.cache
def _syntax_is_implicit(uid: str) -> bool | None:
    """True/False for an implicit/explicit VR little endian syntax read as such by pydicom, None for the others."""
    if uid == ImplicitVRLittleEndian:
        return True
    if uid in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian) or uid in PrivateTransferSyntaxes:
        return None
    syntax = UID(uid)
    if not syntax.is_transfer_syntax or syntax.is_deflated or not syntax.is_little_endian or syntax.is_implicit_VR:
        return None
    return False


@functools.cache
def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


@functools.cache
def _private_vr(tag: int, creator: str) -> str:
    try:
        return str(private_dictionary_VR(tag, creator))
    except KeyError:
        return "UN"


@functools.cache
def _number_format(code: str, count: int) -> struct.Struct:
    return struct.Struct(f"<{count}{code}")


# A raw element: tag, VR (None: implicit, from the dictionary when converted), value offset, length,
# and for a sequence its items (each a list of raw elements).
_Raw = tuple[int, str | None, int, int, "list[list[_Raw]] | None"]


class _FastReader:
    def __init__(self, data: mmap.mmap, implicit: bool, bulk_data_uri: BulkDataUri) -> None:
        self.data = data
        self.implicit = implicit
        self.bulk_data_uri = bulk_data_uri
        self.encoding = "latin_1"

    def dataset(self, position: int, end: int | None, *, top: bool) -> tuple[list[_Raw], int, int | None]:
        """Raw elements from `position` up to `end` (an item's end), the item delimiter (end None, in items) or
        the pixel data / end of file (top). Returns (elements, position after, pixel data tag met or None); when
        the pixel data is met, the position is that of its element header."""
        data, implicit = self.data, self.implicit
        size = len(data)
        limit = size if end is None else end
        if not top and not implicit and position + 6 <= limit:  # pydicom reads an item implicit if it looks so
            first_vr = data[position + 4 : position + 6]
            if _IMPLICIT_HEADER.unpack_from(data, position)[:2] != (0xFFFE, 0xE00D) and not (
                0x40 < first_vr[0] < 0x5B and 0x40 < first_vr[1] < 0x5B
            ):
                raise _Unusual("implicit VR item in an explicit VR data set")
        elements: list[_Raw] = []
        previous = -1
        while position < limit:
            start = position
            if position + 8 > size:
                if top:
                    raise _Unusual("bytes after the last element")
                raise _Unusual("truncated item")
            if implicit:
                group, element, length = _IMPLICIT_HEADER.unpack_from(data, position)
                vr: str | None = None
                position += 8
            else:
                group, element, vr_bytes, length = _HEADER.unpack_from(data, position)
                position += 8
                if group == 0xFFFE:
                    vr = None
                    length = _LONG_LENGTH.unpack_from(data, position - 4)[0]
                else:
                    vr = vr_bytes.decode("latin_1")
                    if vr not in _KNOWN_VRS:
                        raise _Unusual(f"VR {vr!r}")
                    if vr in _LONG_LENGTH_VRS:
                        length = _LONG_LENGTH.unpack_from(data, position)[0]
                        position += 4
            tag = (group << 16) | element
            if tag == _ITEM_END and end is None and not top:
                return elements, position, None
            if group == 0xFFFE or group == 0x0002 or (top and group == 0):
                raise _Unusual(f"element {tag:08X} here")
            if tag <= previous:
                raise _Unusual("elements out of order or repeated")
            if top and tag in PIXEL_TAGS:
                return elements, start, tag
            previous = tag
            items = None
            if length == UNDEFINED_LENGTH:
                if vr is None:
                    vr_found = _dictionary_vr(tag)
                    if (
                        vr_found is None
                        and position + 4 <= size
                        and _IMPLICIT_HEADER.unpack_from(data, position)[:2] == (0xFFFE, 0xE000)
                    ):
                        vr_found = "SQ"
                    if vr_found != "SQ":
                        raise _Unusual("undefined length value")
                elif vr != "SQ":
                    raise _Unusual("undefined length value")
                items, position = self.sequence(position, None)
                elements.append((tag, "SQ", position, length, items))
                continue
            if position + length > size:
                raise _Unusual("value beyond the end of the file")
            if vr == "SQ" or (vr is None and _dictionary_vr(tag) == "SQ"):
                items, _ = self.sequence(position, position + length)
            elements.append((tag, vr, position, length, items))
            position += length
        if position != limit:
            raise _Unusual("item length does not match its elements")
        if not top and end is None:
            raise _Unusual("item without its delimiter")
        return elements, position, None

    def sequence(self, position: int, end: int | None) -> tuple[list[list[_Raw]], int]:
        data = self.data
        items: list[list[_Raw]] = []
        while end is None or position < end:
            group, element, length = _IMPLICIT_HEADER.unpack_from(data, position)
            position += 8
            tag = (group << 16) | element
            if tag == _SEQUENCE_END and end is None:
                return items, position
            if tag != _ITEM:
                raise _Unusual("not an item in a sequence")
            if length == UNDEFINED_LENGTH:
                elements, position, _ = self.dataset(position, None, top=False)
            else:
                elements, position, _ = self.dataset(position, position + length, top=False)
            items.append(elements)
        if position != end:
            raise _Unusual("sequence length does not match its items")
        return items, position

    def number(self, elements: list[_Raw], tag: int) -> int | None:
        """The single US value of `tag` in a data set (BitsAllocated, PixelRepresentation), None if absent/empty."""
        for element in elements:
            if element[0] == tag:
                if element[3] == 0:
                    return None
                if element[3] != 2 or element[1] not in (None, "US"):
                    raise _Unusual(f"{tag:08X} not one US value")
                return _SHORT.unpack_from(self.data, element[2])[0]
        return None

    def charset(self, elements: list[_Raw]) -> None:
        for tag, _vr, position, length, _items in elements:
            if tag == _CHARSET:
                value = self.data[position : position + length].decode("latin_1").rstrip(" \x00")
                if value not in _CHARSETS:
                    raise _Unusual(f"character set {value!r}")
                self.encoding = _CHARSETS[value]
                return
            if tag > _CHARSET:
                return

    def json(self, elements: list[_Raw], parents: tuple[int | str, ...], *, top: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        data = self.data
        for tag, vr, position, length, items in elements:
            key = f"{tag:08X}"
            tag_path = (*parents, tag)
            if items is not None:  # a sequence
                values = [self.json(item, (*tag_path, index), top=False) for index, item in enumerate(items)]
                out[key] = {"vr": "SQ", "Value": values} if values else {"vr": "SQ"}
                continue
            # dataset._is_bulk / _binary_vr: decided on the VR as read (the dictionary's when implicit, else UN)
            raw_vr = vr if vr is not None else (_dictionary_vr(tag) or "UN")
            if length > BULK_DATA_THRESHOLD and (raw_vr == "UN" or any(v in BULK_VRS for v in raw_vr.split(" or "))):
                if " or " in raw_vr:
                    bits = self.number(elements, _BITS_ALLOCATED)
                    raw_vr = "OW" if bits is None or bits > 8 else "OB"
                out[key] = {"vr": raw_vr, "BulkDataURI": self.bulk_data_uri(tag_path)}
                continue
            if vr is None:
                vr = self.implicit_vr(tag, elements)
            elif vr == "UN":
                raise _Unusual("explicit UN")  # pydicom reads it again with the dictionary's VR
            if tag == _CHARSET and not top:
                raise _Unusual("character set in an item")
            if tag in _LUT_DESCRIPTORS:
                raise _Unusual("LUT descriptor")
            if vr == "US or SS":  # filewriter._correct_ambiguous_vr_element, in the root data set only
                if not top or tag not in _AMBIGUOUS_US_SS or b"\\" in data[position : position + length]:
                    raise _Unusual("US or SS")  # (a backslash byte makes pydicom split the bytes)
                representation = [element for element in elements if element[0] == _PIXEL_REPRESENTATION]
                if representation and representation[0][3] == 0:
                    raise _Unusual("empty PixelRepresentation")
                vr = "SS" if representation and self.number(elements, _PIXEL_REPRESENTATION) else "US"
            if length == 0:
                out[key] = {"vr": vr}
                continue
            value = data[position : position + length]
            converted = self.value(vr, value)
            if converted is None:
                out[key] = {"vr": vr}
            elif vr in BULK_VRS:
                out[key] = {"vr": vr, "InlineBinary": converted}
            else:
                out[key] = {"vr": vr, "Value": converted}
        return out

    def implicit_vr(self, tag: int, elements: list[_Raw]) -> str:
        """hooks.raw_element_vr for an implicit VR element."""
        vr = _dictionary_vr(tag)
        if vr is not None:
            return vr
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2 == 1:  # private
            if 0x0010 <= element < 0x0100:
                return "LO"  # private creator
            if element & 0xFF00:
                creator_tag = (group << 16) | (element >> 8)
                for other in elements:
                    if other[0] == creator_tag:
                        creator = self.value("LO", self.data[other[2] : other[2] + other[3]]) if other[3] else None
                        if creator is None:
                            return "UN"
                        if len(creator) != 1:
                            raise _Unusual("private creator with several values")
                        return _private_vr(tag, creator[0])
            return "UN"
        if element == 0:
            return "UL"  # group length
        raise _Unusual(f"unknown tag {tag:08X}")

    def value(self, vr: str, value: bytes) -> Any:
        """The JSON "Value" list (or InlineBinary text) of a non-empty value, None when pydicom finds it empty."""
        if vr in _MULTI_STRING_VRS:
            text = value.decode("latin_1").rstrip(" \x00")
            return text.split("\\") if text else None
        if vr == "UI":  # values.convert_UI, then uid.UID strips each value
            parts = [part.strip() for part in value.decode("latin_1").rstrip(" \x00").split("\\")]
            return None if len(parts) == 1 and not parts[0] else parts
        if vr in _NUMBER_FORMATS:
            size = _NUMBER_SIZES[vr]
            if len(value) % size:
                raise _Unusual("number value of a wrong length")
            return list(_number_format(_NUMBER_FORMATS[vr], len(value) // size).unpack(value))
        if vr == "DS":
            text = value.decode("latin_1").strip().rstrip(" \x00")
            numbers = []
            for part in text.split("\\"):
                if _DS.fullmatch(part) is None:
                    raise _Unusual("DS value pydicom may read otherwise")
                number = float(part)
                if not math.isfinite(number):
                    raise _Unusual("DS value not finite")
                numbers.append(number)
            return numbers
        if vr == "IS":
            text = value.decode("latin_1").rstrip(" \x00")
            integers = []
            for part in text.split("\\"):
                if _IS.fullmatch(part) is None:
                    raise _Unusual("IS value pydicom may read otherwise")
                integers.append(int(part))
            return integers
        if vr in BULK_VRS:
            return base64.b64encode(value).decode("ascii")
        if vr in _TEXT_VRS:
            parts = [part.rstrip("\x00 ") for part in self.text(value).split("\\")]
            return None if len(parts) == 1 and not parts[0] else parts
        if vr in _SINGLE_TEXT_VRS:
            text = self.text(value).rstrip("\x00 ")
            return [text] if text else None
        if vr == "PN":
            names = self.text(value.rstrip(b"\x00 ")).split("\\")
            if len(names) == 1 and not names[0]:
                return None
            out = []
            for name in names:
                components = name.split("=")
                while components and not components[-1]:
                    components.pop()
                if not components:
                    raise _Unusual("person name without components")
                person = {"Alphabetic": components[0]}
                if len(components) > 1:
                    person["Ideographic"] = components[1]
                if len(components) > 2:
                    person["Phonetic"] = components[2]
                out.append(person)
            return out
        if vr == "AE":
            parts = [part.strip() for part in value.decode("latin_1").split("\\")]
            return None if len(parts) == 1 and not parts[0] else parts
        if vr == "UR":  # values.convert_UR_string: one value, never split
            text = value.decode("latin_1").rstrip()
            return [text] if text else None
        if vr == "AT":
            if len(value) % 4:
                raise _Unusual("AT value of a wrong length")
            pairs = struct.unpack(f"<{len(value) // 2}H", value)
            return [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]
        raise _Unusual(f"VR {vr}")

    def text(self, value: bytes) -> str:
        if b"\x1b" in value:
            raise _Unusual("escape sequence in text")
        try:
            return value.decode(self.encoding)
        except UnicodeDecodeError as exc:  # pydicom decodes it with replacement characters, and warns
            raise _Unusual("text not in its character set") from exc


def _fast_instance_metadata(stream: BinaryIO, bulk_data_uri: BulkDataUri) -> dict[str, Any]:
    with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[128:132] != b"DICM":
            raise _Unusual("no DICM prefix")
        position, syntax = 132, None
        while position + 8 <= len(data) and _SHORT.unpack_from(data, position)[0] == 0x0002:  # file meta
            _group, element, vr_bytes, length = _HEADER.unpack_from(data, position)
            vr = vr_bytes.decode("latin_1")
            position += 8
            if vr not in _KNOWN_VRS:
                raise _Unusual("file meta VR")
            if vr in _LONG_LENGTH_VRS:
                length = _LONG_LENGTH.unpack_from(data, position)[0]
                position += 4
            if length == UNDEFINED_LENGTH:
                raise _Unusual("undefined length in the file meta")
            if element == 0x0010:
                syntax = data[position : position + length].decode("latin_1").rstrip("\x00 ").strip()
            position += length
        implicit = _syntax_is_implicit(syntax) if syntax else None
        if implicit is None or position + 8 > len(data):
            raise _Unusual("transfer syntax, or no data set")
        first_vr = data[position + 4 : position + 6]
        if implicit == (0x40 < first_vr[0] < 0x5B and 0x40 < first_vr[1] < 0x5B):
            raise _Unusual("data set encoded otherwise than its transfer syntax says")
        reader = _FastReader(data, implicit, bulk_data_uri)
        elements, position, pixel_tag = reader.dataset(position, None, top=True)
        reader.charset(elements)
        out = reader.json(elements, (), top=True)
        if pixel_tag is not None:
            if not implicit:
                vr = data[position + 4 : position + 6].decode("ascii", "replace")
            elif pixel_tag != PIXEL_DATA:
                vr = str(dictionary_VR(pixel_tag))
            else:
                bits = reader.number(elements, _BITS_ALLOCATED)
                vr = "OW" if bits is None or bits > 8 else "OB"
            out[tag_hex(pixel_tag)] = {"vr": vr, "BulkDataURI": bulk_data_uri((pixel_tag,))}
        return out
