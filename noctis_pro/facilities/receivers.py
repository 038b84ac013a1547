"""Set a study's facility when pacs indexes it (inside the indexing transaction, see pacs.signals)."""

from __future__ import annotations

from typing import Any

from noctis_pro.facilities.services import studies_assign_facility


def on_studies_indexed(sender: Any, *, study_ids: set[int], **kwargs: Any) -> None:
    studies_assign_facility(study_ids=study_ids)
