"""contracts.dicom_json: the fast reader gives, byte for byte, the JSON of pydicom's path (instance_metadata_pydicom).

Files are written by pydicom in the shapes stored instances take (CT, MR, US multi-frame, SR, encapsulated pixel
data; explicit and implicit VR little endian), and with the values that trip conversions: padding, empty values,
several values, DS/IS spellings, person name groups, Latin-1 and UTF-8 text, private tags, bulk and inline binary
values, nested and undefined-length sequences. Raw values are written as RawDataElements, so odd bytes reach the
file as given. Cases the fast reader leaves to pydicom (big endian, deflated, ISO 2022, odd values) must still
give the same JSON.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    ComprehensiveSRStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from noctis_pro.contracts import dicom_json
from tests.conftest import make_dataset

LITTLE_ENDIAN = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def uri(steps: Any) -> str:
    return "/studies/1/series/2/instances/3/bulkdata/" + dicom_json.tag_path_text(steps)


def fast(path: Path) -> str:
    """The fast reader alone (raises dicom_json._Unusual where it hands the file to pydicom)."""
    with path.open("rb") as stream:
        return json.dumps(dicom_json._fast_instance_metadata(stream, uri))


def reference(path: Path) -> str:
    return json.dumps(dicom_json.instance_metadata_pydicom(path, bulk_data_uri=uri))


def served(path: Path) -> str:
    return json.dumps(dicom_json.instance_metadata(path, bulk_data_uri=uri))


def write(ds: Dataset, path: Path, syntax: str) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", MRImageStorage)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    ds.file_meta.TransferSyntaxUID = syntax
    implicit, little = syntax == ImplicitVRLittleEndian, syntax != ExplicitVRBigEndian

    def as_read(d: Dataset) -> None:  # so that pydicom writes the RawDataElements' bytes as they are
        d.set_original_encoding(implicit, little, d._character_set)
        for elem in d.elements():
            if elem.VR == "SQ" and isinstance(elem, DataElement):
                for item in elem.value:
                    as_read(item)

    correct_ambiguous_vr(ds, little)
    as_read(ds)
    ds.save_as(
        path,
        enforce_file_format=True,
        little_endian=syntax != ExplicitVRBigEndian,
        implicit_vr=syntax == ImplicitVRLittleEndian,
    )
    return path


def raw(ds: Dataset, tag: int, vr: str, value: bytes) -> None:
    """Put `value` in the file exactly as given (pydicom writes a RawDataElement's bytes as they are)."""
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def assert_fast_equals_pydicom(path: Path) -> None:
    assert fast(path) == reference(path)
    assert served(path) == reference(path)


def ct() -> Dataset:
    ds = make_dataset(PixelPaddingValue=-2000, SmallestImagePixelValue=-1000)
    ds.LargestImagePixelValue = 3000
    del ds.file_meta
    return ds


def mr_japanese() -> Dataset:
    ds = make_dataset(modality="MR")
    del ds.file_meta
    ds.SOPClassUID = MRImageStorage
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.ReferringPhysicianName = ["Müller^Jürgen", "Ōno^Ichi="]
    ds.StudyDescription = "頭部 MRI"
    ds.InstitutionAddress = "東京都\r\n千代田区 "
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence, ds.SequenceVariant = "SE", ["SK", "SP", "MP"]
    ds.RepetitionTime, ds.EchoTime, ds.MagneticFieldStrength = "4000.0", "87.5", 1.5
    ds.PixelRepresentation = 0
    ds.SmallestImagePixelValue = 0
    ds.LargestImagePixelValue = 4095
    block = ds.private_block(0x0019, "NOCTIS TEST", create=True)
    block.add_new(0x01, "LO", "private text")
    block.add_new(0x02, "US", [1, 2, 3])
    block.add_new(0x03, "OB", bytes(range(256)) * 8)  # bulk
    block.add_new(0x04, "OB", b"\x01\x02\x03")  # inline
    block.add_new(0x05, "DS", ["1.5", "-2"])
    item = Dataset()
    item.add_new(0x00291010, "LO", "NOCTIS TEST")  # a private creator inside an item
    item.add_new(0x00291011, "FD", [0.1, 1e300])
    block.add_new(0x06, "SQ", Sequence([item]))
    return ds


def us_multiframe_jpeg() -> Dataset:
    ds = make_dataset(modality="US", rows=32, columns=32)
    del ds.file_meta
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.NumberOfFrames = 3
    ds.FrameIncrementPointer = 0x00181063  # AT
    ds.FrameTime = "33.3"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.01, 0.01
    ds.SequenceOfUltrasoundRegions = [region]
    icon = Dataset()
    icon.Rows = icon.Columns = 16
    icon.SamplesPerPixel, icon.BitsAllocated, icon.BitsStored, icon.HighBit = 1, 8, 8, 7
    icon.PixelRepresentation, icon.PhotometricInterpretation = 0, "MONOCHROME2"
    icon.PixelData = bytes(range(256))  # inline OB inside an item
    ds.IconImageSequence = [icon]
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes([i]) * 3000 + b"\xff\xd9" for i in range(3)])
    return ds


def sr_nested(defined_lengths: bool) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = ComprehensiveSRStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "SR", "", "X"
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"

    def code(value: str, meaning: str) -> Dataset:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, "DCM", meaning
        return c

    def content(depth: int) -> Dataset:
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "NUM" if depth == 0 else "CONTAINER"
        item.ConceptNameCodeSequence = [code(f"1{depth}", f"Level {depth}")]
        if depth:
            item.ContentSequence = [content(depth - 1), content(depth - 1)]
            item.ContinuityOfContent = "SEPARATE"
        else:
            measured = Dataset()
            measured.NumericValue = "12.50"
            measured.FloatingPointValue = 12.5
            measured.MeasurementUnitsCodeSequence = [code("mm", "millimeter")]
            item.MeasuredValueSequence = [measured]
        item.ReferencedContentItemIdentifier = [1, 2, depth]
        return item

    ds.ConceptNameCodeSequence = [code("126000", "Imaging Measurement Report")]
    ds.ContentSequence = [content(3)]
    ds.ContentTemplateSequence = []  # empty sequence
    empty_item = Dataset()
    ds.ReferencedPerformedProcedureStepSequence = [empty_item]
    if defined_lengths:

        def defined(d: Dataset) -> None:
            for elem in d:
                if elem.VR == "SQ":
                    elem.is_undefined_length = False
                    for item in elem.value:
                        item.is_undefined_length_sequence_item = False
                        defined(item)

        defined(ds)
    return ds


def every_vr(charset: str | None) -> Dataset:
    """One element of each VR (and empty ones), with the padding and spellings a modality may write."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    latin = charset in (None, "ISO_IR 100")
    name = "Müller^Jürgen^^Dr." if latin else "Ōno^Ichi=大野^一"
    raw(ds, 0x00080020, "DA", b"20260101")
    raw(ds, 0x00080021, "DA", b"")
    raw(ds, 0x00080030, "TM", b"101500.123 ")
    raw(ds, 0x0008002A, "DT", b"20260101101500.000000+0100")
    raw(ds, 0x00080054, "AE", b" STORE  \\ARCHIVE ")
    raw(ds, 0x00080060, "CS", b"MR")
    raw(ds, 0x00080068, "CS", b"  ")  # only padding: empty
    raw(ds, 0x00080070, "LO", ("Ünïcode Vendor \x00" if latin else "製造 ").encode("latin_1" if latin else "utf-8"))
    raw(ds, 0x00080080, "LO", b"Hospital \\ Second\\")  # several values, one empty
    raw(ds, 0x00080090, "PN", name.encode("latin_1" if latin else "utf-8"))
    raw(ds, 0x00080094, "SH", b"")
    raw(ds, 0x00081010, "SH", b" STATION1 ")
    raw(ds, 0x00081030, "LO", b"Study\\")
    raw(ds, 0x00081048, "PN", b"A^B\\C^D=E\\^F ")
    raw(ds, 0x00081060, "PN", b"=Ideo^Only")
    raw(ds, 0x00081070, "PN", b"Solo^Name=")  # trailing empty group dropped
    raw(ds, 0x00081090, "LO", b"Model\x00")
    raw(ds, 0x00081190, "UR", b"http://example.org/a\\b  ")
    raw(ds, 0x00100010, "PN", b" ")  # only padding: empty
    raw(ds, 0x00100020, "LO", b"ID\\ 2 ")
    raw(ds, 0x00101010, "AS", b"045Y")
    raw(ds, 0x00101020, "DS", b" 1.75 ")
    raw(ds, 0x00101030, "DS", b"70\\+1.5E2\\-.5\\0.000001\\1e-3 ")
    raw(ds, 0x00102160, "SH", b"")
    raw(ds, 0x00104000, "LT", b"line one\r\nline two \\ with backslash  \x00")
    raw(ds, 0x00181000, "LO", b"")
    raw(ds, 0x00181020, "LO", b"V1\\V2\\V3")
    raw(ds, 0x00181030, "LO", "Protocol \\ é".encode("latin_1" if latin else "utf-8"))
    raw(ds, 0x00181060, "DS", b"0")
    raw(ds, 0x00181063, "DS", b"33.333333")
    raw(ds, 0x00181088, "IS", b"60")
    raw(ds, 0x00181090, "IS", b"007\\-3\\+4 ")
    raw(ds, 0x00181310, "US", np.array([0, 256, 256, 0], "<u2").tobytes())
    raw(ds, 0x00181316, "DS", b"-1024")
    raw(ds, 0x00189087, "FD", np.array([1000.0], "<f8").tobytes())
    raw(ds, 0x00189089, "FD", np.array([0.1, -0.5, 1e-300], "<f8").tobytes())
    raw(ds, 0x00189098, "FD", b"")
    raw(ds, 0x00200011, "IS", b"")
    raw(ds, 0x00200013, "IS", b"1 ")
    raw(ds, 0x00200032, "DS", b"-125.5\\-130.25\\0")
    raw(ds, 0x00200037, "DS", b"1\\0\\0\\0\\1\\0 ")
    raw(ds, 0x00204000, "LT", b"")
    raw(ds, 0x00280030, "DS", b"0.9765625\\0.9765625")
    raw(ds, 0x00280034, "IS", b"1\\1")
    raw(ds, 0x00280100, "US", b"\x10\x00")
    raw(ds, 0x00280103, "US", b"\x00\x00")
    raw(ds, 0x00281052, "DS", b"-1024.0")
    raw(ds, 0x00281053, "DS", b"1.0")
    raw(ds, 0x00282110, "CS", b"00")
    raw(ds, 0x00321032, "PN", b"")
    raw(ds, 0x00400244, "DA", b"20260101\\20260102")
    raw(ds, 0x00081160, "IS", b"1\\2\\3")
    raw(ds, 0x00189219, "SS", np.array([-5, 5], "<i2").tobytes())
    raw(ds, 0x00209158, "LT", b"  leading spaces kept")
    raw(ds, 0x00209241, "FL", np.array([0.1, 3.4e38, -0.0], "<f4").tobytes())
    raw(ds, 0x00209057, "UL", np.array([1, 4294967295], "<u4").tobytes())
    raw(ds, 0x00186020, "SL", np.array([-2147483648, 7], "<i4").tobytes())
    raw(ds, 0x00209165, "AT", np.array([0x0020, 0x9056, 0x0020, 0x9057], "<u2").tobytes())
    raw(ds, 0x00400555, "SQ", b"")  # empty sequence
    raw(ds, 0x0040A124, "UI", b"1.2.3.4\x00")
    raw(ds, 0x0040A30A, "DS", b"")
    raw(ds, 0x0040A160, "UT", ("x" * 2000 + " ").encode())  # a long text: served inline, not as bulk data
    raw(ds, 0x0040A168, "SQ", b"")
    raw(ds, 0x00420011, "OB", bytes(range(256)) * 5)  # bulk (1280 bytes)
    raw(ds, 0x00181638, "OF", np.arange(8, dtype="<f4").tobytes())
    raw(ds, 0x00660024, "OW", np.arange(1000, dtype="<u2").tobytes())  # bulk (2000 bytes)
    raw(ds, 0x00660040, "OL", np.arange(4, dtype="<u4").tobytes())
    raw(ds, 0x00640009, "OF", b"")
    raw(ds, 0x003A032E, "OD", np.arange(3, dtype="<f8").tobytes())
    raw(ds, 0x00720052, "AT", b"")
    raw(ds, 0x00080050, "SH", b"\\")
    raw(ds, 0x0008040C, "UV", np.array([2**64 - 1], "<u8").tobytes())
    raw(ds, 0x00720082, "SV", np.array([-(2**63), 5], "<i8").tobytes())
    raw(ds, 0x00720081, "OV", np.array([1], "<u8").tobytes())
    raw(ds, 0x00080119, "UC", b"unlimited\\characters ")
    raw(ds, 0x00720062, "CS", b"A\\B\\")
    raw(ds, 0x0072006E, "ST", b"short text\\kept whole   ")
    return ds


# --- generated files, all read by the fast reader ---------------------------------------------------------------


@pytest.mark.parametrize("syntax", LITTLE_ENDIAN)
@pytest.mark.parametrize(
    "build",
    [ct, mr_japanese, lambda: sr_nested(False), lambda: sr_nested(True)],
    ids=["ct", "mr-utf8-private", "sr-undefined-lengths", "sr-defined-lengths"],
)
def test_fast_reader_equals_pydicom(tmp_path: Path, build: Callable[[], Dataset], syntax: str) -> None:
    path = write(build(), tmp_path / "x.dcm", syntax)
    assert_fast_equals_pydicom(path)


@pytest.mark.parametrize("syntax", LITTLE_ENDIAN)
@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192"])
def test_every_vr_equals_pydicom(tmp_path: Path, syntax: str, charset: str | None) -> None:
    path = write(every_vr(charset), tmp_path / "x.dcm", syntax)
    assert_fast_equals_pydicom(path)


def test_encapsulated_multiframe_equals_pydicom(tmp_path: Path) -> None:
    path = write(us_multiframe_jpeg(), tmp_path / "x.dcm", JPEGBaseline8Bit)
    assert_fast_equals_pydicom(path)
    assert json.loads(fast(path))["7FE00010"]["vr"] == "OB"


@pytest.mark.parametrize("syntax", [*LITTLE_ENDIAN, RLELossless])
def test_bench_and_test_suite_shapes_equal_pydicom(tmp_path: Path, syntax: str) -> None:
    from ops.bench import ct_series

    for path in ct_series(tmp_path / "bench", 3, size=64):
        assert_fast_equals_pydicom(path)
    ds = make_dataset(transfer_syntax=syntax if syntax != RLELossless else ExplicitVRLittleEndian)
    if syntax == RLELossless:
        ds.compress(RLELossless)
    path = tmp_path / "suite.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert_fast_equals_pydicom(path)


def test_pixel_data_vr_in_implicit_vr_follows_bits_allocated(tmp_path: Path) -> None:
    for bits in (8, 16):
        ds = ct()
        ds.BitsAllocated = bits
        path = write(ds, tmp_path / f"{bits}.dcm", ImplicitVRLittleEndian)
        assert_fast_equals_pydicom(path)
        assert json.loads(fast(path))["7FE00010"]["vr"] == ("OB" if bits == 8 else "OW")


def test_implicit_private_tags_take_the_private_dictionary_vr(tmp_path: Path) -> None:
    ds = ct()
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")  # known to pydicom's private dictionary
    ds.add_new(0x0019101E, "DS", "320.0")
    ds.add_new(0x00191023, "DS", "0.5")
    ds.add_new(0x00291010, "LO", "UNKNOWN CREATOR")
    ds.add_new(0x00291011, "OB", b"\x00\x01\x02")  # unknown: UN
    ds.add_new(0x00291012, "OB", bytes(2000))  # unknown and long: bulk data, UN
    ds.add_new(0x00291013, "OB", b"")
    path = write(ds, tmp_path / "x.dcm", ImplicitVRLittleEndian)
    assert_fast_equals_pydicom(path)
    out = json.loads(fast(path))
    assert out["00291011"]["vr"] == "UN"
    assert out["0019101E"]["vr"] == "DS"


RANDOM_TAGS = [
    *[(0x00081030, "LO"), (0x0008103E, "LO"), (0x00081080, "LO"), (0x00081040, "LO"), (0x00081010, "SH")],
    *[(0x00104000, "LT"), (0x00324000, "LT"), (0x00080081, "ST"), (0x0008030E, "UT"), (0x00080119, "UC")],
    *[(0x00080090, "PN"), (0x00081050, "PN"), (0x00081060, "PN"), (0x00100010, "PN"), (0x00321032, "PN")],
    *[(0x00080060, "CS"), (0x00180015, "CS"), (0x00080020, "DA"), (0x00080030, "TM"), (0x0008002A, "DT")],
    *[(0x00101010, "AS"), (0x00080054, "AE"), (0x00081190, "UR"), (0x0040A124, "UI")],
    *[(0x00180050, "DS"), (0x00280030, "DS"), (0x00200013, "IS"), (0x00200012, "IS")],
]


@pytest.mark.parametrize("seed", range(40))
def test_random_values_equal_pydicom(tmp_path: Path, seed: int) -> None:
    """Random values (padding, NULs, backslashes, '=', '^', non-ASCII, odd lengths, number spellings) in text,
    name, code, date, UID and number VRs: where the fast reader answers, pydicom answers the same."""
    rng = random.Random(seed)
    syntax = rng.choice(LITTLE_ENDIAN)
    charset = rng.choice([None, "ISO_IR 100", "ISO_IR 192"])
    alphabet = ["A", "z", "0", "7", " ", " ", "\\", "^", "=", ".", "-", "+", "e", "\x00", "\t", "é"]
    if charset == "ISO_IR 192":
        alphabet += ["山", "Ō"]
    encoding = "utf-8" if charset == "ISO_IR 192" else "latin_1"
    ds = ct()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    for tag, vr in RANDOM_TAGS:
        if vr in ("DS", "IS") and rng.random() < 0.9:
            numbers = ["1", "-2", "+3", "007", "0"]
            numbers += ["1.5", ".5", "-1e3", "2.", "1E-2", "0.000001"] if vr == "DS" else []
            value = "\\".join(rng.choice(numbers) for _ in range(rng.randrange(1, 4))).encode()
            value = rng.choice([b"", b" "]) * (vr == "DS") + value + rng.choice([b"", b" ", b"\x00"])
        else:
            letters = alphabet if rng.random() < 0.3 else [c for c in alphabet if c not in "=\\"]
            value = "".join(rng.choice(letters) for _ in range(rng.randrange(0, 16))).encode(encoding)
        raw(ds, tag, vr, value)
    path = write(ds, tmp_path / "x.dcm", syntax)
    try:
        expected: str | type[Exception] = reference(path)
    except Exception as exc:  # e.g. pydicom's IndexError on an empty name among several: this path must fail alike
        expected = type(exc)
    with contextlib.suppress(dicom_json._Unusual):  # the file is left to pydicom: checked below
        assert fast(path) == expected
    if isinstance(expected, str):
        assert served(path) == expected
    else:
        with pytest.raises(expected):
            served(path)


def test_uids_are_stripped_as_pydicom_does(tmp_path: Path) -> None:
    ds = ct()
    raw(ds, 0x0040A124, "UI", b" 1.2.3 \\\t4.5")
    raw(ds, 0x00081150, "UI", b"\t\x00")
    path = write(ds, tmp_path / "x.dcm", ExplicitVRLittleEndian)
    assert_fast_equals_pydicom(path)


@pytest.mark.parametrize("size", [16, 64])
def test_icon_pixel_data_in_implicit_vr(tmp_path: Path, size: int) -> None:
    """An icon's "OB or OW" pixel data: bulk data (VR by its BitsAllocated) read fast, inline left to pydicom."""
    ds = ct()
    icon = Dataset()
    icon.Rows = icon.Columns = size
    icon.SamplesPerPixel, icon.BitsAllocated, icon.BitsStored, icon.HighBit = 1, 8, 8, 7
    icon.PixelRepresentation, icon.PhotometricInterpretation = 0, "MONOCHROME2"
    icon.PixelData = bytes(size * size)
    ds.IconImageSequence = [icon]
    path = write(ds, tmp_path / "x.dcm", ImplicitVRLittleEndian)
    assert served(path) == reference(path)
    if size * size > dicom_json.BULK_DATA_THRESHOLD:
        assert json.loads(fast(path))["00880200"]["Value"][0]["7FE00010"]["vr"] == "OB"
    else:
        with pytest.raises(dicom_json._Unusual):
            fast(path)


def test_truncated_files_fail_or_read_as_pydicom_does(tmp_path: Path) -> None:
    whole = write(mr_japanese(), tmp_path / "whole.dcm", ExplicitVRLittleEndian).read_bytes()
    path = tmp_path / "x.dcm"
    for cut in (140, 200, 300, 700, 1500, len(whole) - 100):
        path.write_bytes(whole[:cut])
        try:
            expected: str | type[Exception] = reference(path)
        except Exception as exc:
            expected = type(exc)
        if isinstance(expected, str):
            assert served(path) == expected
        else:
            with pytest.raises(expected):
                served(path)


# --- files the fast reader leaves to pydicom: same JSON ---------------------------------------------------------


def unusual_cases() -> dict[str, tuple[Callable[[], Dataset], str]]:
    def odd_ds() -> Dataset:
        ds = ct()
        raw(ds, 0x00180050, "DS", b"1.5 \\2")  # a space inside a value: pydicom's float() takes it
        return ds

    def iso2022() -> Dataset:
        ds = ct()
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        raw(ds, 0x00100010, "PN", b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B")
        return ds

    def explicit_un() -> Dataset:
        ds = ct()
        raw(ds, 0x00181030, "OB", b"PROTOCOL")  # made UN in the file below: pydicom reads it as the dictionary's LO
        return ds

    def lut() -> Dataset:
        ds = ct()
        voi = Dataset()
        raw(voi, 0x00283002, "US", np.array([256, 0, 16], "<u2").tobytes())
        raw(voi, 0x00283006, "OW", np.arange(256, dtype="<u2").tobytes())
        ds.VOILUTSequence = [voi]
        return ds

    def bad_utf8() -> Dataset:
        ds = ct()
        ds.SpecificCharacterSet = "ISO_IR 192"
        raw(ds, 0x00081030, "LO", b"caf\xe9")
        return ds

    def empty_pixel_representation() -> Dataset:
        ds = ct()
        ds.PixelRepresentation = None
        ds.add_new(0x00280106, "US", 5)
        return ds

    return {
        "empty-pixel-representation": (empty_pixel_representation, ImplicitVRLittleEndian),
        "big-endian": (lambda: ct(), ExplicitVRBigEndian),
        "deflated": (lambda: ct(), DeflatedExplicitVRLittleEndian),
        "odd-ds": (odd_ds, ExplicitVRLittleEndian),
        "iso-2022": (iso2022, ExplicitVRLittleEndian),
        "explicit-un": (explicit_un, ExplicitVRLittleEndian),
        "lut-in-implicit-item": (lut, ImplicitVRLittleEndian),
        "undecodable-utf8": (bad_utf8, ExplicitVRLittleEndian),
    }


@pytest.mark.parametrize("case", list(unusual_cases()))
def test_unusual_files_are_left_to_pydicom(tmp_path: Path, case: str) -> None:
    build, syntax = unusual_cases()[case]
    path = write(build(), tmp_path / "x.dcm", syntax)
    if case == "explicit-un":
        path.write_bytes(path.read_bytes().replace(b"\x18\x00\x30\x10OB", b"\x18\x00\x30\x10UN"))
    with pytest.raises(dicom_json._Unusual):
        fast(path)
    assert served(path) == reference(path)


def test_not_a_dicom_file_fails_as_before(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    for content in (b"", b"not dicom" * 30):
        path.write_bytes(content)
        try:
            reference(path)
        except Exception as exc:  # whatever pydicom raises for it
            expected = type(exc)
        else:
            pytest.fail("pydicom read a file that is not DICOM")
        with pytest.raises(expected):
            served(path)
