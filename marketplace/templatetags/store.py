from __future__ import annotations

from django import template

from marketplace.store.selectors import templates_for_node
from providers.models import Node

register = template.Library()


@register.inclusion_tag("store/_fitting_templates.html")
def fitting_templates(node: Node) -> dict:
    """The model store's templates that fit `node` (the offer page)."""
    return {"node": node, "templates": templates_for_node(node)}
