"""{% deployment_runway deployment %}: the owner's runway on a deployment page (billing.runway)."""

from __future__ import annotations

from django import template

from billing.runway import user_runway

register = template.Library()


@register.inclusion_tag("billing/_runway.html")
def deployment_runway(deployment) -> dict:
    """The owner's credits at the spend of all their running rentals; nothing once it ended."""
    if not getattr(deployment, "is_active", False):
        return {"runway": None}
    return {"runway": user_runway(user=deployment.owner), "deployment": deployment}


@register.inclusion_tag("billing/_runway.html")
def account_runway(user) -> dict:
    return {"runway": user_runway(user=user), "account": True}
