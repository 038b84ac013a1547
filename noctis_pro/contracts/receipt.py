"""The receipt (outbox) row the SCP and STOW-RS write and pacs.indexing reads: table pacs_receipt.

ATTR_KEYWORDS are the attributes the writer extracts into `attrs` (JSON object keyword -> string, multi-values
joined with a backslash as in DICOM; absent attributes omitted). tests/contracts/receipt.json pins this list
for the Rust SCP.
"""

TABLE = "pacs_receipt"
SOURCE_DIMSE = "dimse"
SOURCE_STOW = "stow"

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
