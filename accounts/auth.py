"""API authentication: a logged-in session (with CSRF for unsafe methods) or an API key.

Use `auth=api_auth` on a router or operation; the view gets the user as `request.auth`.
A request that sends an `Authorization` header is judged by that header alone: a wrong or
revoked key is a 401 even when the browser also has a session cookie.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from accounts.api_keys import api_key_authenticate
from accounts.models import User
from core.errors import ApplicationError
from core.throttle import auth_failure, auth_refuse_if_blocked

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}


class BearerAuth(HttpBearer):
    """django-ninja's `HttpBearer` without its DEBUG log line, which writes a header with another
    scheme (`Token …`, `Basic …`), credential included, to the log."""

    def __call__(self, request: HttpRequest) -> Any:
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token)


class ApiKeyAuth(BearerAuth):
    """`Authorization: Bearer sph_...`, a key from the account page. Failures are rate limited per
    client address (core.throttle): a blocked address is refused before its key is looked at."""

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        auth_refuse_if_blocked(request)
        user = api_key_authenticate(raw_key=token.strip())
        if user is None:
            auth_failure(request)
        return user


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
