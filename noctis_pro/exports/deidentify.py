"""De-identification per DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

The profile's action table is long; most of it falls into a few rules that are applied to every element,
nested sequences included, so an attribute the table below forgets is still handled:
- private elements are removed (no Retain Safe Private option);
- person names are emptied (PN), dates and times are emptied (DA, DT, TM): the profile's Z/X/D for nearly
  every one of them; emptied rather than removed, so type 2 attributes stay present;
- UIDs are replaced (U) by `2.25.<hash>` of the original and a per-export salt: consistent within one export
  (references between instances still resolve), unlinkable across exports. UIDs the standard defines
  (1.2.840.10008.*: SOP classes, transfer syntaxes, coding schemes) are kept;
- the named attributes below are removed or replaced (free text, addresses, devices, institution...).
Pixel data is kept as stored; instances that declare burned-in annotation are left out (this profile does
not clean pixels), and the caller reports them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

PROFILE_NAME = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
STANDARD_UID_ROOT = "1.2.840.10008."

# Replaced by a pseudonym (the profile allows a dummy value; a consistent one keeps a patient's studies together
# inside one export).
PSEUDONYMISED = {"PatientName", "PatientID"}

# Emptied but kept: type 2 in the common IODs.
EMPTIED = {"AccessionNumber", "StudyID", "PatientSex", "ReferringPhysicianName", "PatientBirthDate"}

REMOVED = {
    "AcquisitionComments",
    "AdditionalPatientHistory",
    "AdmissionID",
    "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription",
    "Allergies",
    "Arbitrary",
    "AuthorObserverSequence",
    "BranchOfService",
    "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription",
    "ContentCreatorName",
    "ContributionDescription",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "CurveData",
    "DerivationDescription",
    "DeviceSerialNumber",
    "DeviceUID",
    "DigitalSignaturesSequence",
    "DischargeDiagnosisDescription",
    "EthnicGroup",
    "FrameComments",
    "GantryID",
    "IconImageSequence",
    "IdentifyingComments",
    "ImageComments",
    "ImagePresentationComments",
    "ImagingServiceRequestComments",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence",
    "InterpretationApproverSequence",
    "InterpretationAuthor",
    "InterpretationRecorder",
    "InterpretationTranscriber",
    "IssuerOfAdmissionID",
    "IssuerOfPatientID",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "ModifiedAttributesSequence",
    "NameOfPhysiciansReadingStudy",
    "NamesOfIntendedRecipientsOfResults",
    "Occupation",
    "OperatorIdentificationSequence",
    "OperatorsName",
    "OrderCallbackPhoneNumber",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OriginalAttributesSequence",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientAge",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientReligiousPreference",
    "PatientSize",
    "PatientState",
    "PatientTelephoneNumbers",
    "PatientTransportArrangements",
    "PatientWeight",
    "PerformedLocation",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepID",
    "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PersonAddress",
    "PersonIdentificationCodeSequence",
    "PersonName",
    "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "PlateID",
    "PreMedication",
    "ReasonForStudy",
    "ReferencedPatientAliasSequence",
    "ReferencedPatientSequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedContrastAgent",
    "RequestedProcedureComments",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "RequestedProcedureLocation",
    "RequestingPhysician",
    "RequestingService",
    "ResponsibleOrganization",
    "ResponsiblePerson",
    "ResultsComments",
    "ResultsDistributionListSequence",
    "ResultsIDIssuer",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepLocation",
    "ServiceEpisodeDescription",
    "ServiceEpisodeID",
    "SmokingStatus",
    "SpecialNeeds",
    "StationName",
    "StudyComments",
    "TextComments",
    "TopicAuthor",
    "TopicKeywords",
    "TopicSubject",
    "TopicTitle",
    "VerifyingObserverIdentificationCodeSequence",
    "VerifyingObserverName",
    "VerifyingObserverSequence",
    "VerifyingOrganization",
    "VisitComments",
    # Descriptions are free text that often names the patient or the site (no Retain Descriptors option).
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
}

_DATE_TIME_VRS = {"DA", "DT", "TM"}


@dataclass
class Deidentifier:
    """One export's de-identification: the salt and the pseudonyms are shared by all its instances."""

    salt: str
    pseudonyms: dict[str, str] = field(default_factory=dict)

    def uid(self, original: str) -> str:
        if not original or original.startswith(STANDARD_UID_ROOT):
            return original
        digest = hashlib.sha256(f"{self.salt}\0{original}".encode()).digest()
        # 2.25.<integer>: the UUID-derived root (PS3.5 B.2) takes any integer below 2**128.
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def patient_pseudonym(self, patient_id: str) -> str:
        if patient_id not in self.pseudonyms:
            self.pseudonyms[patient_id] = f"ANON{len(self.pseudonyms) + 1:04d}"
        return self.pseudonyms[patient_id]

    def dataset(self, ds: Dataset) -> Dataset:
        """De-identify `ds` in place (file meta included) and return it."""
        pseudonym = self.patient_pseudonym(str(ds.get("PatientID", "")))
        self._clean(ds)
        ds.PatientName = pseudonym
        ds.PatientID = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "NoctisPro: PS3.15 Annex E basic profile"  # LO: at most 64 characters
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        meta = getattr(ds, "file_meta", None)
        if isinstance(meta, FileMetaDataset):
            meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
            for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle"):
                if keyword in meta:
                    delattr(meta, keyword)
        return ds

    def _clean(self, ds: Dataset) -> None:
        for elem in list(ds):
            if elem.tag.is_private:
                del ds[elem.tag]
                continue
            keyword = elem.keyword
            if keyword in REMOVED:
                del ds[elem.tag]
            elif keyword in PSEUDONYMISED or keyword in EMPTIED:
                elem.value = ""
            elif elem.VR == "SQ":
                for item in elem.value:
                    self._clean(item)
            elif elem.VR == "PN" or elem.VR in _DATE_TIME_VRS:
                elem.value = ""
            elif elem.VR == "UI":
                self._uid_replace(elem)
            elif 0x6000 <= elem.tag.group <= 0x60FF and elem.tag.element in (0x3000, 0x4000):
                del ds[elem.tag]  # overlay data and comments can carry burned-in text

    def _uid_replace(self, elem: DataElement) -> None:
        if elem.VM > 1:
            elem.value = [self.uid(str(v)) for v in elem.value]
        elif elem.value:
            elem.value = self.uid(str(elem.value))


def burned_in_annotation(ds: Dataset) -> bool:
    return str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
