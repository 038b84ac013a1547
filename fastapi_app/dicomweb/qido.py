"""QIDO-RS (PS3.18 10.6): a query string -> sql.QidoFilters, and index rows -> DICOM JSON.

Matching, per attribute kind (PS3.4 C.2.2.2):
- UID (StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID): one UID or a list separated by
  commas or backslashes; no wildcards.
- text (PatientID, AccessionNumber, StudyID, Modality, ...): the whole value, case-sensitive; `*` matches any
  run of characters and `?` one character.
- person name (PatientName, ReferringPhysicianName): as text but case-insensitive. With `fuzzymatching=true`
  every word of the value (split at `^`, `=`, spaces and commas) must begin a name component or word of the
  name, in any order, case-insensitive: `jan doe` and `DO^JA` both find `DOE^JANE`. `*` and `?` still work.
- date (StudyDate, PatientBirthDate): YYYYMMDD, or a range `A-B`, `A-` or `-B`, bounds included.
- time (StudyTime): HH[MM[SS[.FFFFFF]]] or a range of them; a partial time covers its whole hour or minute.
  Date and time are matched separately (no combined date-time range).
- number (SeriesNumber, InstanceNumber): one integer.
- ModalitiesInStudy: one modality or a list (comma or backslash); a study matches when it has any of them.
An empty value (`PatientName=`) matches everything and asks for the attribute, like includefield.
Unknown keys, keys of another level and malformed values are 400 naming the key. An attribute includefield
names that the index does not keep (at the instance level: those of contracts.receipt.ATTR_KEYWORDS) is left out.
`limit` defaults to and is capped at 1000; when more results exist the answer carries `Warning: 299 ...`.
An empty result is 200 with `[]`: PS3.18 (2019 and later) answers a search with 200 and the matches; an empty
array keeps clients that always parse JSON simple.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from fastapi_app import sql
from fastapi_app.dicomweb.json_model import da, element, element_from_text, tm
from fastapi_app.errors import InvalidRequestError
from noctis_pro.contracts.uids import uid_problem

DEFAULT_LIMIT = 1000
MAX_LIMIT = 1000
CONTROL_PARAMETERS = frozenset({"limit", "offset", "fuzzymatching", "includefield"})
LEVELS = ("study", "series", "instance")


@dataclass(frozen=True)
class Attribute:
    keyword: str
    vr: str
    level: str
    column: str | None  # the query's column, or None for RetrieveURL
    match: str | None  # how it is matched (see the module docstring); None: returned only
    required: bool = True  # returned without includefield

    @cached_property
    def tag(self) -> str:
        tag = tag_for_keyword(self.keyword)
        assert tag is not None
        return f"{tag:08X}"


ATTRIBUTES: tuple[Attribute, ...] = (
    # study (PS3.18 table 10.6.3-3)
    Attribute("StudyDate", "DA", "study", "study_date", "date"),
    Attribute("StudyTime", "TM", "study", "study_time", "time"),
    Attribute("AccessionNumber", "SH", "study", "accession_number", "text"),
    Attribute("ModalitiesInStudy", "CS", "study", "modalities_in_study", "modalities"),
    Attribute("ReferringPhysicianName", "PN", "study", "referring_physician_name", "name"),
    Attribute("PatientName", "PN", "study", "patient_name", "name"),
    Attribute("PatientID", "LO", "study", "patient_id", "text"),
    Attribute("PatientBirthDate", "DA", "study", "patient_birth_date", "date"),
    Attribute("PatientSex", "CS", "study", "patient_sex", "exact"),
    Attribute("StudyInstanceUID", "UI", "study", "study_instance_uid", "uid"),
    Attribute("StudyID", "SH", "study", "study_id", "text"),
    Attribute("NumberOfStudyRelatedSeries", "IS", "study", "number_of_series", None),
    Attribute("NumberOfStudyRelatedInstances", "IS", "study", "number_of_instances", None),
    Attribute("StudyDescription", "LO", "study", "study_description", "text", required=False),
    Attribute("InstitutionName", "LO", "study", "institution_name", None, required=False),
    # series (table 10.6.3-4)
    Attribute("Modality", "CS", "series", "modality", "text"),
    Attribute("SeriesInstanceUID", "UI", "series", "series_instance_uid", "uid"),
    Attribute("SeriesNumber", "IS", "series", "series_number", "number"),
    Attribute("SeriesDescription", "LO", "series", "series_description", "text"),
    Attribute("NumberOfSeriesRelatedInstances", "IS", "series", "series_number_of_instances", None),
    Attribute("BodyPartExamined", "CS", "series", "body_part_examined", "text", required=False),
    Attribute("SeriesDate", "DA", "series", "series_date", None, required=False),
    Attribute("SeriesTime", "TM", "series", "series_time", None, required=False),
    # instance (table 10.6.3-5)
    Attribute("SOPClassUID", "UI", "instance", "sop_class_uid", "uid"),
    Attribute("SOPInstanceUID", "UI", "instance", "sop_instance_uid", "uid"),
    Attribute("InstanceNumber", "IS", "instance", "instance_number", "number"),
    Attribute("Rows", "US", "instance", "rows", None),
    Attribute("Columns", "US", "instance", "columns", None),
    Attribute("NumberOfFrames", "IS", "instance", "number_of_frames", None),
)
BY_KEYWORD = {a.keyword: a for a in ATTRIBUTES}
RETRIEVE_URL_TAG = "00081190"
# Filter field names in sql.QidoFilters per matchable keyword: (exact or list field, LIKE field).
_FILTER_FIELDS: dict[str, tuple[str, str | None]] = {
    "StudyInstanceUID": ("study_uids", None),
    "PatientName": ("patient_name_words", "patient_name_like"),
    "PatientID": ("patient_id", "patient_id_like"),
    "AccessionNumber": ("accession_number", "accession_number_like"),
    "StudyDate": ("study_date_from", "study_date_to"),
    "StudyTime": ("study_time_from", "study_time_to"),
    "ModalitiesInStudy": ("modalities", "modalities_like"),
    "ReferringPhysicianName": ("referring_physician_words", "referring_physician_like"),
    "PatientBirthDate": ("birth_date_from", "birth_date_to"),
    "PatientSex": ("patient_sex", None),
    "StudyID": ("study_id", "study_id_like"),
    "StudyDescription": ("", "study_description_like"),
    "SeriesInstanceUID": ("series_uids", None),
    "Modality": ("modality", "modality_like"),
    "SeriesNumber": ("series_number", None),
    "SeriesDescription": ("series_description", "series_description_like"),
    "BodyPartExamined": ("body_part_examined", "body_part_examined_like"),
    "SOPInstanceUID": ("sop_instance_uids", None),
    "SOPClassUID": ("sop_class_uids", None),
    "InstanceNumber": ("instance_number", None),
}
_MODALITY_RE = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_DATE_RE = re.compile(r"^\d{8}$")
_TIME_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_NAME_WORD_SPLIT = re.compile(r"[\^= ,]+")


@dataclass(frozen=True)
class QidoRequest:
    """What a search asks: the SQL filters, which attributes to return, the page."""

    filters: sql.QidoFilters
    include: frozenset[str]  # keywords asked for beyond the required ones
    include_all: bool
    limit: int
    offset: int


def key_keyword(key: str) -> str | None:
    """A query key (keyword or 8-digit tag) as a keyword, or None when it names no DICOM attribute."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        return keyword_for_tag(int(key, 16)) or None
    return key if tag_for_keyword(key) is not None else None


def qido_request_parse(
    params: Sequence[tuple[str, str]], *, levels: Iterable[str], fixed: Mapping[str, list[str]] | None = None
) -> QidoRequest:
    """The query string of a search over `levels` (with the UIDs of its URL path in `fixed`) as a QidoRequest."""
    levels = frozenset(levels)
    filters: dict[str, Any] = {}
    include: set[str] = set()
    include_all = False
    limit, offset, fuzzy = DEFAULT_LIMIT, 0, False
    seen: set[str] = set()
    matches: list[tuple[Attribute, str, str]] = []
    for key, value in params:
        if key == "limit":
            limit = _integer(key, value, low=1, high=MAX_LIMIT)
        elif key == "offset":
            offset = _integer(key, value, low=0, high=None)
        elif key == "fuzzymatching":
            if value not in {"true", "false"}:
                raise InvalidRequestError(f"fuzzymatching {value[:20]!r} is not true or false")
            fuzzy = value == "true"
        elif key == "includefield":
            for field in (f.strip() for f in value.split(",")):
                if field == "all":
                    include_all = True
                elif field:
                    keyword = key_keyword(field)
                    if keyword is None:
                        raise InvalidRequestError(f"includefield {field[:64]!r} is not a DICOM keyword or tag")
                    include.add(keyword)
        else:
            keyword = key_keyword(key)
            if keyword is None:
                raise InvalidRequestError(f"unknown query key {key[:64]!r}: not a DICOM keyword or tag")
            attribute = BY_KEYWORD.get(keyword)
            if attribute is None or attribute.level not in levels:
                raise InvalidRequestError(f"{keyword} is not a matching key of this search")
            if keyword in seen:
                raise InvalidRequestError(f"{keyword} is given more than once")
            seen.add(keyword)
            include.add(keyword)
            if value == "":
                continue  # universal matching: return the attribute, match everything
            if attribute.match is None:
                raise InvalidRequestError(f"{keyword} can be returned but not matched")
            matches.append((attribute, key, value))
    for attribute, key, value in matches:
        filters.update(_filter(attribute, key, value, fuzzy=fuzzy))
    for keyword, uids in (fixed or {}).items():
        field = _FILTER_FIELDS[keyword][0]
        asked = filters.get(field)
        filters[field] = uids if asked is None else [u for u in asked if u in uids]
    return QidoRequest(sql.QidoFilters(**filters), frozenset(include), include_all, limit, offset)


def _integer(key: str, value: str, *, low: int, high: int | None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequestError(f"{key} {value[:20]!r} is not an integer") from None
    if number < low or (high is not None and number > high):
        raise InvalidRequestError(f"{key} {number} is out of range ({low}..{high if high is not None else ''})")
    return number


def _like(value: str) -> str:
    """A DICOM wildcard value as a LIKE pattern: `*` any run, `?` one character, everything else literal."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _filter(attribute: Attribute, key: str, value: str, *, fuzzy: bool) -> dict[str, Any]:
    exact_field, like_field = _FILTER_FIELDS[attribute.keyword]
    kind = attribute.match
    if len(value) > 256:
        raise InvalidRequestError(f"{key} is longer than 256 characters")
    if kind == "uid":
        uids = [u.strip() for u in re.split(r"[,\\]", value) if u.strip()]
        for uid in uids:
            problem = uid_problem(uid)
            if problem is not None:
                raise InvalidRequestError(f"{key} {uid[:80]!r} is {problem}")
        return {exact_field: uids}
    if kind == "text":
        if _has_wildcard(value):
            assert like_field is not None
            return {like_field: _like(value)}
        return {exact_field: value} if exact_field else {like_field: _like(value)}
    if kind == "exact":
        return {exact_field: value}
    if kind == "name":
        assert like_field is not None
        if fuzzy:
            return {exact_field: _fuzzy_words(key, value)}
        return {like_field: _like(value.upper())}
    if kind == "number":
        try:
            return {exact_field: int(value)}
        except ValueError:
            raise InvalidRequestError(f"{key} {value[:20]!r} is not an integer") from None
    if kind == "modalities":
        assert like_field is not None
        codes = [m.strip().upper() for m in re.split(r"[,\\]", value) if m.strip()]
        for code in codes:
            if not _MODALITY_RE.fullmatch(code):
                raise InvalidRequestError(f"{key} {code[:20]!r} is not a modality code")
        narrowing = {like_field: "%" + _like(codes[0]) + "%"} if len(codes) == 1 else {}
        return {exact_field: codes, **narrowing}
    assert like_field is not None
    if kind == "date":
        low, high = _range(key, value, _date_bounds)
        return {exact_field: low, like_field: high}
    if kind == "time":
        low, high = _range(key, value, _time_bounds)
        return {exact_field: low, like_field: high}
    raise AssertionError(kind)


def _fuzzy_words(key: str, value: str) -> list[str]:
    """One regex per word: the word at the start of the name or after ^, =, a space or a comma."""
    words = [w for w in _NAME_WORD_SPLIT.split(value.upper()) if w]
    if not words:
        raise InvalidRequestError(f"{key} {value[:40]!r} has no name to match")
    patterns = []
    for word in words:
        body = "".join("[^^= ,]*" if c == "*" else "[^^= ,]" if c == "?" else re.escape(c) for c in word)
        patterns.append(f"(^|[\\^= ,]){body}")
    return patterns


def _range(key: str, value: str, bounds: Any) -> tuple[Any, Any]:
    if "-" in value:
        first, _, last = value.partition("-")
        if not first and not last:
            raise InvalidRequestError(f"{key} {value!r} is not a range")
        low = bounds(key, first)[0] if first else None
        high = bounds(key, last)[1] if last else None
        if low is not None and high is not None and low > high:
            raise InvalidRequestError(f"{key} {value!r} ends before it starts")
        return low, high
    return bounds(key, value)


def _date_bounds(key: str, text: str) -> tuple[dt.date, dt.date]:
    try:
        if not _DATE_RE.fullmatch(text):
            raise ValueError
        day = dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise InvalidRequestError(f"{key} {text[:20]!r} is not a date (YYYYMMDD, or a range A-B)") from None
    return day, day


def _time_bounds(key: str, text: str) -> tuple[dt.time, dt.time]:
    found = _TIME_RE.fullmatch(text.replace(":", ""))
    try:
        if found is None:
            raise ValueError
        hour, minute, second, fraction = found.groups()
        low = dt.time(
            int(hour), int(minute or 0), int(second or 0), int((fraction or "0").ljust(6, "0")) if fraction else 0
        )
        high = dt.time(
            int(hour),
            int(minute) if minute else 59,
            int(second) if second else 59,
            int(fraction.ljust(6, "0")) if fraction else 999_999,
        )
    except ValueError:
        raise InvalidRequestError(f"{key} {text[:20]!r} is not a time (HHMMSS, or a range A-B)") from None
    return low, high


# --- answers -----------------------------------------------------------------------------------------------------


# How row_json builds a value from its column.
_PLAIN, _DATE, _TIME, _LIST, _NAME, _URL = range(6)


@lru_cache(maxsize=256)
def _answer_plan(
    levels: frozenset[str], include_all: bool, include: frozenset[str]
) -> tuple[tuple[str, str, str, int], ...]:
    """(tag, VR, column, how) of each attribute an answer holds, in tag order, RetrieveURL included: worked out once
    per kind of request, so a page of results costs no look-ups, no checks per attribute and no sort per row."""
    plan: list[tuple[str, str, str, int]] = [(RETRIEVE_URL_TAG, "UR", "", _URL)]
    for a in ATTRIBUTES:
        if a.level in levels and (a.required or include_all or a.keyword in include):
            how = {"DA": _DATE, "TM": _TIME, "PN": _NAME}.get(a.vr, _PLAIN)
            plan.append((a.tag, a.vr, a.column or "", _LIST if a.keyword == "ModalitiesInStudy" else how))
    return tuple(sorted(plan))


def row_json(
    row: Mapping[str, Any], *, levels: Iterable[str], request: QidoRequest, retrieve_url: str
) -> dict[str, Any]:
    """One result: the required attributes of `levels`, those asked for, and RetrieveURL, ordered by tag.
    Values as json_model.element() gives them: None and "" are an attribute without Value (PS3.18 F.2.5)."""
    levels = levels if isinstance(levels, frozenset) else frozenset(levels)
    out: dict[str, Any] = {}
    for tag, vr, column, how in _answer_plan(levels, request.include_all, request.include):
        value = retrieve_url if how == _URL else row.get(column)
        if value is None or value == "":
            out[tag] = {"vr": vr}
        elif how in (_PLAIN, _URL):
            out[tag] = {"vr": vr, "Value": [value]}
        elif how == _DATE:
            out[tag] = {"vr": vr, "Value": [da(value)]}
        elif how == _TIME:
            out[tag] = {"vr": vr, "Value": [tm(value)]}
        elif how == _NAME:
            out[tag] = {"vr": vr, "Value": [{"Alphabetic": str(value)}]}
        else:  # _LIST: a backslash-joined multi-value
            out[tag] = element(vr, [m for m in value.split("\\") if m])
    if "instance" in levels and (request.include_all or request.include):
        extra = _instance_attrs(row.get("attrs"), request)
        if extra:
            extra.update(out)  # the index's columns win over a keyword also kept in attrs
            return dict(sorted(extra.items()))
    return out


def _instance_attrs(attrs: Any, request: QidoRequest) -> dict[str, Any]:
    """Attributes the index keeps per instance (pacs_instance.attrs), when includefield asks for them."""
    if isinstance(attrs, str):
        attrs = json.loads(attrs)
    if not isinstance(attrs, dict):
        return {}
    out: dict[str, Any] = {}
    for keyword, text in attrs.items():
        if keyword in BY_KEYWORD or not (request.include_all or keyword in request.include):
            continue
        tag = tag_for_keyword(keyword)
        if tag is None or not isinstance(text, str):
            continue
        out[f"{tag:08X}"] = element_from_text(str(dictionary_VR(tag)), text)
    return out
