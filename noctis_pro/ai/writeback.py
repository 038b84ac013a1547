"""Write analysis results back into the archive as standard DICOM: a TID 1500 measurement report (Comprehensive 3D
SR, built with highdicom) sent with C-STORE to our own SCP, so it is stored, receipted and indexed like any image.

The SR's Series and SOP Instance UIDs derive from the analysis id, so a retried analysis stores the same object
again (indexing is idempotent on the SOP Instance UID) instead of a second copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import highdicom as hd
from django.conf import settings
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from noctis_pro.ai.analyzers.base import InstanceRef, Measurement
from noctis_pro.ai.analyzers.pixels import header_read

logger = logging.getLogger(__name__)

SR_SERIES_NUMBER = 9900  # series numbers of derived objects sort after the acquired ones
IMAGING_PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging")
STORE_OK = {0x0000, 0xB000, 0xB006, 0xB007}


class WritebackError(RuntimeError):
    """The SR could not be stored (our SCP unreachable or refusing it): the attempt fails and is retried."""


def sr_uids(*, analysis_id: int, study_uid: str) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of an analysis' SR: stable across retries."""
    seed = [settings.SECRET_KEY[:16], study_uid, str(analysis_id)]
    return generate_uid(entropy_srcs=["series", *seed]), generate_uid(entropy_srcs=["sop", *seed])


def measurement_report_build(
    *,
    analysis_id: int,
    analyzer: str,
    study_uid: str,
    evidence: Sequence[Dataset],
    measurements: Sequence[Measurement],
) -> Dataset:
    """A Comprehensive 3D SR holding one TID 1501 measurement group whose source images are `evidence`."""
    series_uid, sop_uid = sr_uids(analysis_id=analysis_id, study_uid=study_uid)
    observation_context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(entropy_srcs=["noctis-ai-device", analyzer]),
                name=f"NoctisPro {analyzer}",
                manufacturer_name="NoctisPro",
            ),
        )
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=["tracking", series_uid]), identifier=f"{analyzer} #{analysis_id}"
        ),
        algorithm_id=hd.sr.AlgorithmIdentification(name=analyzer, version="1"),
        measurements=[
            hd.sr.Measurement(
                name=hd.sr.CodedConcept(m.code, m.scheme, m.meaning),
                value=float(m.value),
                unit=hd.sr.CodedConcept(m.unit, "UCUM", m.unit_meaning),
            )
            for m in measurements
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(evidence[len(evidence) // 2])],
    )
    report = hd.sr.MeasurementReport(
        observation_context=observation_context,
        procedure_reported=IMAGING_PROCEDURE,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(evidence),
        content=report,
        series_instance_uid=series_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="NoctisPro",
        is_complete=True,
    )
    sr.SeriesDescription = f"NoctisPro {analyzer}"[:64]
    return sr


def evidence_read(instances: Sequence[InstanceRef]) -> list[Dataset]:
    return [header_read(i.path) for i in instances]


def dataset_store(ds: Dataset) -> int:
    """C-STORE `ds` to our own SCP (AI_WRITEBACK_HOST, DICOM_PORT, DICOM_AE_TITLE); returns the status."""
    ae = AE(ae_title=settings.AI_WRITEBACK_CALLING_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    host, port, called = settings.AI_WRITEBACK_HOST, settings.AI_WRITEBACK_PORT, settings.DICOM_AE_TITLE
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        raise WritebackError(f"no association with {called}@{host}:{port}")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    code = int(status.Status) if status and "Status" in status else None
    if code not in STORE_OK:
        raise WritebackError(f"{called} answered {'nothing' if code is None else f'0x{code:04X}'} to the SR")
    logger.info("stored SR %s (status 0x%04X)", ds.SOPInstanceUID, code)
    return code
