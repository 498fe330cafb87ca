"""API authentication: a logged-in session (with CSRF for unsafe methods) or an API key.

Use `auth=api_auth` on a router or operation; the view gets the user as `request.auth`.
A request that sends an `Authorization` header is judged by that header alone: a wrong or
revoked key is a 401 even when the browser also has a session cookie.

An API key is checked, in this order, on every request (its row is read each time, so a
revocation or a changed limit applies to the next request):

1. it exists, is not revoked and its owner is active, else 401;
2. the client address is in the key's allowed networks (when it lists any), else 403;
3. the key's rate limit for the route class (below), else 429 with `Retry-After` and the
   RateLimit-* headers of core.ratelimit, which every answer to a key also carries;
4. the key's scopes cover the route (below), else 403
   `{"message": "This key lacks the 'deploy' scope.", "extra": {"required_scope": "deploy", ...}}`;
5. starting a deployment with a key that has a daily spend cap: the deployment's hold is counted
   against what the key committed today (UTC), else 403 with the cap, today's total and the hold
   in `extra` (403, not 402: the account may well have the credits; this key may not spend them).
   The count is given back when the deployment is not created after all (spheron_web.api).

Scopes, by method and path under /api/v1 (the routers declare nothing: the path decides):

    GET, HEAD, OPTIONS   anything                          read, or the scope of the path's area
    POST                 deployments/validate              read, or deploy (it changes nothing)
    POST, PUT, PATCH,    deployments, deployments/...      deploy
    DELETE               billing, billing/...              billing  (top-ups, deposit checks, alerts, auto-reload)
                         provider, provider/...            provider (node tokens, maintenance, prices,
                                                                     payouts, slash appeals)
                         anything else (wallets, ...)      full
    `full` grants everything the account may do. A key made before scopes existed has `full`.

Rate classes, per key (settings.API_KEY_RATE_LIMITS, e.g. {"read": "600/min"}, over RATE_LIMITS
below): `read` for GET/HEAD/OPTIONS, `deploy` for POST deployments and POST
deployments/<id>/redeploy (each starts one), `write` for every other request. Sessions (the
browser) are not rate limited here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from accounts.api_keys import api_key_allows_address, api_key_authenticate, api_key_spend_reserve
from accounts.models import ApiKey, ApiKeyScope, User
from core.errors import ApplicationError
from core.ratelimit import Rate, RateLimitExceeded, rate_limit_hit, rate_parse
from core.throttle import auth_failure, auth_refuse_if_blocked, client_ip

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
API_ROOT = "/api/v1/"
# (path prefix under /api/v1, the scope that writes there and reads there too)
AREA_SCOPES = (
    ("deployments", ApiKeyScope.DEPLOY),
    ("billing", ApiKeyScope.BILLING),
    ("provider", ApiKeyScope.PROVIDER),
)
READ_ONLY_POSTS = {"deployments/validate"}
RATE_LIMITS = {"read": "600/min", "write": "120/min", "deploy": "30/min"}

# (request) -> micro-USD the request would hold, or None when it holds nothing (e.g. a bad spec,
# which the operation itself refuses). Registered by the project for POST deployments.
SpendEstimator = Callable[[HttpRequest], int | None]
_spend_estimators: dict[tuple[str, str], SpendEstimator] = {}


def register_spend_estimator(*, method: str, path: str, estimator: SpendEstimator) -> None:
    """A route (method, path under /api/v1) that spends: a key's daily cap is checked against it."""
    _spend_estimators[(method.upper(), path.strip("/"))] = estimator


def api_path(request: HttpRequest) -> str:
    """The request's path under /api/v1, without slashes at either end."""
    path = request.path_info
    if path.startswith(API_ROOT):
        path = path[len(API_ROOT) :]
    return path.strip("/")


def _area_scope(path: str) -> str | None:
    for prefix, scope in AREA_SCOPES:
        if path == prefix or path.startswith(prefix + "/"):
            return scope.value
    return None


def required_scope(method: str, path: str) -> str:
    """The scope a request needs (`read`, `deploy`, `billing`, `provider` or `full`): the table above."""
    if method in SAFE_METHODS or (method == "POST" and path in READ_ONLY_POSTS):
        return ApiKeyScope.READ.value
    return _area_scope(path) or ApiKeyScope.FULL.value


def missing_scope(scopes: list[str], method: str, path: str) -> str | None:
    """The scope the request needs and the key lacks, or None when the key may make it."""
    if ApiKeyScope.FULL in scopes:
        return None
    needed = required_scope(method, path)
    if needed in scopes:
        return None
    if needed == ApiKeyScope.READ and _area_scope(path) in scopes:
        return None
    return needed


def rate_class(method: str, path: str) -> str:
    if method in SAFE_METHODS:
        return "read"
    if method == "POST" and (path == "deployments" or (path.startswith("deployments/") and path.endswith("/redeploy"))):
        return "deploy"
    return "write"


def rate_limits() -> dict[str, Rate]:
    """Each rate class's limit per key: settings.API_KEY_RATE_LIMITS over RATE_LIMITS."""
    overrides = getattr(settings, "API_KEY_RATE_LIMITS", {})
    unknown = set(overrides) - set(RATE_LIMITS)
    if unknown:
        raise ImproperlyConfigured(
            f"API_KEY_RATE_LIMITS: unknown route class {', '.join(sorted(unknown))}; the classes are "
            f"{', '.join(RATE_LIMITS)}."
        )
    configured = {**RATE_LIMITS, **overrides}
    return {route_class: rate_parse(configured[route_class]) for route_class in RATE_LIMITS}


def _api_key_checks(request: HttpRequest, api_key: ApiKey) -> None:
    """Steps 2–5 of the module docstring, for a valid key."""
    ip = client_ip(request)
    if not api_key_allows_address(api_key, ip):
        shown = str(ip) if ip is not None else "an unknown address"
        raise ApplicationError(
            f"This key may not be used from {shown}: it works only from the addresses listed for it "
            "on the API keys page.",
            {"client_address": str(ip) if ip is not None else None},
            status=403,
        )
    method = (request.method or "GET").upper()
    path = api_path(request)
    route_class = rate_class(method, path)
    rate = rate_limits()[route_class]
    state = rate_limit_hit(bucket=f"apikey:{api_key.id}:{route_class}", policy=route_class, rate=rate)
    request.rate_limit = state  # type: ignore[attr-defined]  # spheron_web.api writes the headers
    if not state.allowed:
        raise RateLimitExceeded(
            f"This key made {state.quota} {route_class} requests in {state.window} s, its limit. "
            f"Try again in {state.reset} s.",
            state=state,
        )
    lacking = missing_scope(api_key.scopes, method, path)
    if lacking is not None:
        raise ApplicationError(
            f"This key lacks the '{lacking}' scope.",
            {"required_scope": lacking, "scopes": api_key.scopes},
            status=403,
        )
    estimator = _spend_estimators.get((method, path))
    if estimator is not None and api_key.daily_spend_cap is not None:
        amount = estimator(request)
        if amount:
            spend_id = api_key_spend_reserve(api_key_id=api_key.id, amount=amount)
            if spend_id is not None:
                request.api_key_spend = (spend_id, amount)  # type: ignore[attr-defined]


class BearerAuth(HttpBearer):
    """django-ninja's `HttpBearer` without its DEBUG log line, which writes a header with another
    scheme (`Token …`, `Basic …`), credential included, to the log."""

    def __call__(self, request: HttpRequest) -> Any:
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token)


class ApiKeyAuth(BearerAuth):
    """`Authorization: Bearer sph_...`, a key from the account page, checked as the module docstring
    says. Failures are rate limited per client address (core.throttle): a blocked address is
    refused before its key is looked at."""

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        auth_refuse_if_blocked(request)
        api_key = api_key_authenticate(raw_key=token.strip())
        if api_key is None:
            auth_failure(request)
            return None
        request.api_key = api_key  # type: ignore[attr-defined]
        _api_key_checks(request, api_key)
        return api_key.user


class SessionCsrfAuth(APIKeyCookie):
    """The browser's Django session; POST/PUT/PATCH/DELETE also need the CSRF token."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self) -> None:
        super().__init__(csrf=False)  # checked below, and only once we know who is asking

    def __call__(self, request: HttpRequest) -> Any:
        if "Authorization" in request.headers:
            return None  # the header decides alone (see the module docstring)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        # Django's own check (ninja marks its views CSRF-exempt), once we know a session is in use.
        if request.method not in SAFE_METHODS and check_csrf(request) is not None:
            raise ApplicationError(
                "CSRF check failed: send the X-CSRFToken header with the csrftoken cookie's value, "
                "or authenticate with an API key instead.",
                status=403,
            )
        return user

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:  # pragma: no cover - see __call__
        return None


api_auth = [ApiKeyAuth(), SessionCsrfAuth()]


rate_limits()  # a bad API_KEY_RATE_LIMITS stops the server as it starts, not on some request
