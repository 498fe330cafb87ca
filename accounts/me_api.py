"""/api/v1/me: who the request is (the account, and the API key it came with: its scopes, daily cap
and allowed networks), for `sphnctl whoami` and scripts that check a key before using it."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Router
from pydantic import BaseModel, Field

from accounts.auth import api_auth
from core.money import format_usd
from core.schemas import ERRORS

router = Router(tags=["account"], auth=api_auth)


class KeyOut(BaseModel):
    label: str
    prefix: str = Field(description="The key's first characters")
    scopes: list[str]
    daily_spend_cap: str | None = Field(description="USD a day the key may commit to new deployments; null: none")
    allowed_networks: list[str] = Field(description="Client addresses the key works from; empty: any")
    created_at: datetime
    last_used_at: datetime | None


class MeOut(BaseModel):
    email: str
    name: str
    roles: list[str] = Field(description='"developer", "provider", "staff"')
    auth: str = Field(description='"api_key" or "session"')
    key: KeyOut | None = Field(description="The API key of this request; null for a browser session")


@router.get("", response={200: MeOut, **ERRORS}, operation_id="me", summary="Who this request is")
def me(request: HttpRequest):
    user = request.auth  # type: ignore[attr-defined]
    roles = [role for role, has in (("developer", user.is_developer), ("provider", user.is_provider)) if has]
    if user.is_staff:
        roles.append("staff")
    key = getattr(request, "api_key", None)
    return {
        "email": user.email,
        "name": user.name,
        "roles": roles,
        "auth": "api_key" if key is not None else "session",
        "key": None
        if key is None
        else {
            "label": key.label,
            "prefix": key.prefix,
            "scopes": list(key.scopes),
            "daily_spend_cap": None
            if key.daily_spend_cap is None
            else format_usd(key.daily_spend_cap, places=2).lstrip("$"),
            "allowed_networks": list(key.allowed_networks or []),
            "created_at": key.created_at,
            "last_used_at": key.last_used_at,
        },
    }
