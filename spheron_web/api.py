"""The /api/v1 NinjaAPI: mounts each app's router and maps errors to one JSON shape.

Requests made with an API key (accounts.auth) carry their rate-limit state: every answer to them,
success or error, gets the RateLimit-* headers (core.ratelimit). Starting a deployment with a key
that has a daily spend cap counts the deployment's hold against the cap before the operation runs
(the estimator below); when the operation then fails, the count is given back (`on_exception`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer

from accounts.api_keys import api_key_spend_release
from accounts.auth import register_spend_estimator
from core.errors import ApplicationError
from core.throttle import RateLimited
from marketplace.deployments import services as deployments
from marketplace.deployments.spec import MAX_SPEC_BYTES, SpecError


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact, never a float
    return str(value)  # lazy translation strings and the like


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return orjson.dumps(data, default=_json_default)


def _with_rate_limit_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    state = getattr(request, "rate_limit", None)
    if state is not None:
        for name, value in state.headers().items():
            response[name] = value
    return response


class SpheronNinjaAPI(NinjaAPI):
    def create_temporal_response(self, request: HttpRequest) -> HttpResponse:
        # Successful answers (and streams) are built on this response: its headers are kept.
        return _with_rate_limit_headers(request, super().create_temporal_response(request))

    def create_response(
        self,
        request: HttpRequest,
        data: Any,
        *,
        status: int | None = None,
        temporal_response: HttpResponse | None = None,
    ) -> HttpResponse:
        response = super().create_response(request, data, status=status, temporal_response=temporal_response)
        return _with_rate_limit_headers(request, response)

    def on_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        reserved = getattr(request, "api_key_spend", None)
        if reserved is not None:
            # The deployment was not created: what its hold counted against the key's cap comes back.
            request.api_key_spend = None  # type: ignore[attr-defined]
            api_key_spend_release(spend_id=reserved[0], amount=reserved[1])
        return super().on_exception(request, exc)


def _deployment_hold(request: HttpRequest) -> int | None:
    """What POST /deployments would hold (micro-USD), read from the body as the operation will;
    None for a body or spec the operation refuses anyway (422)."""
    if len(request.body) > 2 * MAX_SPEC_BYTES:
        return None
    try:
        source = orjson.loads(request.body).get("spec")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(source, str | dict):
        return None
    try:
        return deployments.estimate(deployments.spec_from_source(source))["hold_micros"]
    except SpecError:
        return None


register_spend_estimator(method="POST", path="deployments", estimator=_deployment_hold)

api = SpheronNinjaAPI(
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
    api.add_router("/billing", "billing.alerts_api.router")  # alerts and auto-reload
    api.add_router("/billing", "billing.statements_api.router")  # monthly statements
    api.add_router("/billing/deposits", "billing.deposits_api.router")
    api.add_router("/", "billing.deposits_api.chains_router")
    api.add_router("/", "providers.api.node_router")
    api.add_router("/", "marketplace.deployments.agent_api.router")  # a node's lease events
    api.add_router("/provider", "providers.api.provider_router")
    api.add_router("/provider", "providers.rewards_api.router")  # GET /provider/rewards
    api.add_router("/deployments", "marketplace.deployments.api.router")
    api.add_router("/templates", "marketplace.store.api.router")  # the model store
    api.add_router("/wallets", "accounts.wallets_api.router")
    api.add_router("/me", "accounts.me_api.router")  # who this request is (sphnctl whoami)


_mount_routers()
