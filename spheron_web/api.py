"""The /api/v1 NinjaAPI: mounts each app's router and maps errors to one JSON shape."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer

from core.errors import ApplicationError
from core.throttle import RateLimited


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact, never a float
    return str(value)  # lazy translation strings and the like


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return orjson.dumps(data, default=_json_default)


api = NinjaAPI(
    renderer=ORJSONRenderer(),
    title="Spheron Web API",
    version="1",
    description=(
        "The open compute marketplace. Errors always have the shape "
        '`{"message": str, "extra": object}`; validation errors list each bad field in `extra.errors`.'
    ),
    urls_namespace="api-v1",
)


def _field_name(loc: list | tuple) -> str:
    # ninja prefixes locations with the source ("query", "body", "path") and sometimes the schema name.
    parts = [str(part) for part in loc if part not in ("query", "body", "path", "header", "cookie", "filters")]
    if len(parts) > 1 and parts[0] == "payload":  # the body parameter's own name
        parts = parts[1:]
    return ".".join(parts) or "request"


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = []
    for error in exc.errors:
        field = _field_name(error.get("loc", ()))
        message = str(error.get("msg", "invalid value"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        errors.append({"field": field, "message": message})
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in errors)
    return api.create_response(
        request, {"message": f"Invalid input. {summary}", "extra": {"errors": errors}}, status=422
    )


@api.exception_handler(ApplicationError)
def _application_error(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    return api.create_response(request, {"message": exc.message, "extra": exc.extra}, status=exc.status)


@api.exception_handler(RateLimited)
def _rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = api.create_response(request, {"message": exc.message, "extra": exc.extra}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    message = str(exc) or "Not found."
    return api.create_response(request, {"message": message, "extra": {}}, status=404)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(request, {"message": "Authentication required.", "extra": {}}, status=401)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"message": str(exc), "extra": {}}, status=exc.status_code)


def _mount_routers() -> None:
    from marketplace.catalog.api import router as marketplace_router

    api.add_router("/", marketplace_router)
    api.add_router("/billing", "billing.api.router")
    api.add_router("/billing/deposits", "billing.deposits_api.router")
    api.add_router("/", "billing.deposits_api.chains_router")
    api.add_router("/", "providers.api.node_router")
    api.add_router("/", "marketplace.deployments.agent_api.router")  # a node's lease events
    api.add_router("/provider", "providers.api.provider_router")
    api.add_router("/provider", "providers.rewards_api.router")  # GET /provider/rewards
    api.add_router("/deployments", "marketplace.deployments.api.router")
    api.add_router("/wallets", "accounts.wallets_api.router")


_mount_routers()
