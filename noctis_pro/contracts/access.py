"""Which studies a user may see: the ONE facility rule, applied by Django (noctis_pro.facilities.access) and
FastAPI (REST, DICOMweb, /ws). Pure Python, no Django import.

A study belongs to the facility of the AE title that sent it (facilities_facilityae); a study from an AE that
no facility claims is *unassigned* (pacs_study.facility_id NULL).
- An admin sees every study.
- Any other user sees the studies of the facilities they belong to.
- A user who belongs to no facility sees the unassigned studies: on a single-site install nobody has to set up
  facilities, and on a multi-site one every sending AE is mapped, so unassigned studies are the rare unknown
  sender, which stays out of every facility's staff's sight until an admin maps it.

The answer is a list of facility ids where UNASSIGNED (0, never a real id) stands for "no facility", or None for
"everything". SQL matches it as `($n::bigint[] IS NULL OR COALESCE(facility_id, 0) = ANY($n))`.
"""

from __future__ import annotations

from collections.abc import Iterable

from noctis_pro.contracts import roles

UNASSIGNED = 0


def visible_facility_ids(*, is_superuser: bool, groups: Iterable[str], member_of: Iterable[int]) -> list[int] | None:
    if roles.is_admin(is_superuser=is_superuser, groups=groups):
        return None
    ids = sorted({int(i) for i in member_of})
    return ids or [UNASSIGNED]


def facility_visible(facility_id: int | None, visible: list[int] | None) -> bool:
    """Whether a study of `facility_id` (None: unassigned) is in `visible` (an answer of visible_facility_ids)."""
    return visible is None or (facility_id or UNASSIGNED) in visible
