"""Facility assignment of studies: from the calling AE at indexing, and again when an admin maps an AE."""

from __future__ import annotations

from django.db.models import OuterRef, Subquery

from noctis_pro.facilities.models import FacilityAE
from noctis_pro.pacs.workflow import studies_facility_set


def studies_assign_facility(*, study_ids: set[int]) -> int:
    """Give each unassigned study among `study_ids` the facility of its calling AE (if one claims it).

    A study keeps the facility it got first: a later sender (a workstation re-sending it) does not move it."""
    if not study_ids:
        return 0
    facility = FacilityAE.objects.filter(ae_title=OuterRef("calling_ae")).values("facility_id")[:1]
    return studies_facility_set(study_ids=study_ids, facility=Subquery(facility))


def facility_ae_studies_claim(*, ae: FacilityAE) -> int:
    """After an admin maps an AE: its unassigned studies join that facility."""
    return studies_facility_set(calling_ae=ae.ae_title, facility=ae.facility_id)
