from __future__ import annotations

from django import template
from django.utils.http import urlencode

from core.money import format_usd

register = template.Library()


@register.filter
def usd(micros: int | None, places: int = 3) -> str:
    """175000 -> '$0.175'; None -> '—'."""
    if micros is None or micros == "":
        return "—"
    return format_usd(int(micros), places=int(places))


@register.filter
def percent(fraction: float | None) -> str:
    if fraction is None:
        return "—"
    return f"{fraction * 100:.2f}%"


@register.simple_tag
def query_with(active: dict, **overrides) -> str:
    """The current filters as a query string, with some keys replaced (None drops a key)."""
    params = {key: value for key, value in active.items()}
    for key, value in overrides.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return urlencode(params)
