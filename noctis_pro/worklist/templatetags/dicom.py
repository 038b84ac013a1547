"""Template filters for DICOM text. They return plain strings: Django's autoescape still applies."""

from django import template

register = template.Library()


def _group(group: str) -> str:
    parts = [p.strip() for p in group.split("^")]
    family, rest = parts[0], " ".join(p for p in parts[1:] if p)
    if family and rest:
        return f"{family}, {rest}"
    return family or rest


@register.filter
def person_name(value: str) -> str:
    """A PN for reading: "Doe^Jane^^Dr" -> "Doe, Jane Dr". Component groups ("=") are kept; nothing is dropped."""
    return "=".join(_group(g) for g in (value or "").split("="))


@register.filter
def modality_list(value: str) -> str:
    return " ".join(m for m in (value or "").split("\\") if m)
