"""Building the patient-name LIKE pattern from what a user types."""

import pytest

from noctis_pro.pacs.selectors import WorklistFilters, like_pattern


@pytest.mark.parametrize(
    ("term", "pattern"),
    [("smith", "%SMITH%"), ("Smi*", "SMI%"), ("*^MAR?", "%^MAR_"), ("100%", "%100\\%%"), ("a_b", "%A\\_B%"),
     (" doe ", "%DOE%"), ("back\\slash", "%BACK\\\\SLASH%")],
)  # fmt: skip
def test_like_pattern(term: str, pattern: str) -> None:
    assert like_pattern(term) == pattern


def test_worklist_filters_is_empty() -> None:
    assert WorklistFilters().is_empty
    assert not WorklistFilters(modality="CT").is_empty
