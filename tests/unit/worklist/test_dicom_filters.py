"""Display filters for DICOM text in templates."""

import pytest

from noctis_pro.worklist.templatetags.dicom import modality_list, person_name


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("Doe^Jane", "Doe, Jane"), ("Doe^Jane^Q^Dr^Jr", "Doe, Jane Q Dr Jr"), ("Doe", "Doe"), ("^Jane", "Jane"),
     ("", ""), ("Yamada^Tarou=山田^太郎", "Yamada, Tarou=山田, 太郎"),
     ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>")],
)  # fmt: skip
def test_person_name_keeps_every_character_of_meaning(raw: str, shown: str) -> None:
    assert person_name(raw) == shown


def test_modality_list() -> None:
    assert modality_list("CT\\MR") == "CT MR"
    assert modality_list("") == ""
