"""Template filters for DICOM text. They return plain strings: Django's autoescape still applies."""

from django import template

register = template.Library()


@register.filter
def person_name(value: str) -> str:
    """ "Doe^Jane^^Dr" -> "Doe, Jane"; the alphabetic group only (ideographic/phonetic groups follow "=")."""
    alphabetic = (value or "").split("=")[0]
    parts = [p.strip() for p in alphabetic.split("^")]
    family, given = [*parts, "", ""][:2]
    if family and given:
        return f"{family}, {given}"
    return family or given


@register.filter
def modality_list(value: str) -> str:
    return " ".join(m for m in (value or "").split("\\") if m)
