"""`{% load node_admin %}{% if user|may_manage_nodes %}`: show node links to the admin role only."""

from typing import Any

from django import template

from noctis_pro.pacs.nodes import user_may_manage_nodes

register = template.Library()


@register.filter
def may_manage_nodes(user: Any) -> bool:
    return user_may_manage_nodes(user)
