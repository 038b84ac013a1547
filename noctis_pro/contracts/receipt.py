"""The receipt (outbox) row the SCP and STOW-RS write and pacs.indexing reads: table pacs_receipt.

ATTR_KEYWORDS are the attributes the writer extracts into `attrs` (JSON object keyword -> string, multi-values
joined with a backslash as in DICOM; absent attributes omitted). tests/contracts/receipt.json pins this list
for the Rust SCP.
"""

TABLE = "pacs_receipt"
SOURCE_DIMSE = "dimse"
SOURCE_STOW = "stow"

# `digest` (receipt and instance) is "<algorithm>:<lowercase hex>" of the whole stored Part-10 file: "blake3:"
# for every file the SCP stores (`b3sum` checks it; it hashes four times faster than SHA-256, which was the
# SCP's largest CPU cost per instance), "sha256:" for rows written before migration pacs 0008 (`sha256sum`).
DIGEST_ALGORITHMS = ("blake3", "sha256")
DIGEST_LENGTH = len("blake3:") + 64

ATTR_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ReferringPhysicianName",
    "StudyID",
    "InstitutionName",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "Manufacturer",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsAllocated",
    "PhotometricInterpretation",
    "ImageType",
    "SliceThickness",
    "SliceLocation",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "AcquisitionDateTime",
    "ContentDate",
    "ContentTime",
)
