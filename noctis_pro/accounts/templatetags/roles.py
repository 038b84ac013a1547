"""`{% load roles %}{% if user|can:"report.sign" %}`: show what the user's roles allow (the views enforce it)."""

from typing import Any

from django import template

from noctis_pro.accounts.roles import user_can

register = template.Library()


@register.filter
def can(user: Any, permission: str) -> bool:
    return user_can(user, permission)
