"""`{% provider_calculator %}`: the earnings calculator, pre-filled with the example machine, on
a page whose view knows nothing of it (the onboarding page)."""

from __future__ import annotations

from typing import Any

from django import template

from providers.calculator import calculator_context

register = template.Library()


@register.inclusion_tag("providers/calculator.html#calculator")
def provider_calculator() -> dict[str, Any]:
    return calculator_context({}) | {"embedded": True}
