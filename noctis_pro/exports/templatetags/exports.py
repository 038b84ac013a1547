from typing import Any

from django import template

from noctis_pro.accounts.roles import user_can
from noctis_pro.contracts import roles

register = template.Library()


@register.filter
def can_export(user: Any) -> bool:
    return user_can(user, roles.EXPORT)
