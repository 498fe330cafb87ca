"""/api/v1/deployments (to be written)."""

from __future__ import annotations

from ninja import Router

from spheron_web.auth import api_auth

router = Router(tags=["deployments"], auth=api_auth)
