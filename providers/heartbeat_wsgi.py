"""The node heartbeat without Django's request stack: a WSGI wrapper around the Django application.

`POST /api/v1/nodes/{id}/heartbeat` is the busiest route by far (13,000 nodes every 15 s are
~870 requests/s) and needs none of what Django's stack does for people: sessions, CSRF, messages,
allauth, htmx, WhiteNoise, URL resolving, django-ninja's routing. Here the steady heartbeat costs
one Redis round trip to read (credentials, pending challenges, active leases: one MGET), the same
validation (`HeartbeatIn`, pydantic) and the same handler as the django-ninja route
(`providers.api.heartbeat_handle`), and one write.

Only the happy path is served here. Anything else — another method or path, a host not in
ALLOWED_HOSTS, plain http where SECURE_SSL_REDIRECT wants https, a missing or wrong secret, another
node's id, an oversized or invalid body — is handed to Django unchanged (the body already read is
put back), so every error has exactly the django-ninja route's status and message.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from django.conf import settings
from django.core import signals
from django.http.request import split_domain_port, validate_host
from pydantic import ValidationError

from core.errors import ApplicationError
from providers import api, liveness

logger = logging.getLogger("django.request")

_PATH = re.compile(r"/api/v1/nodes/([0-9]{1,12})/heartbeat")
_STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden",
           404: "404 Not Found", 409: "409 Conflict", 422: "422 Unprocessable Entity",
           500: "500 Internal Server Error"}  # fmt: skip

WSGIApp = Callable[[dict[str, Any], Callable], Iterable[bytes]]


def _security_headers(secure: bool) -> list[tuple[str, str]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to an API response."""
    headers = []
    if secure and settings.SECURE_HSTS_SECONDS:
        value = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            value += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            value += "; preload"
        headers.append(("Strict-Transport-Security", value))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        headers.append(("Referrer-Policy", policy if isinstance(policy, str) else ",".join(policy)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
    return headers


class NodeHeartbeatFastPath:
    """`application = NodeHeartbeatFastPath(get_wsgi_application())` (spheron_web/wsgi.py)."""

    def __init__(self, django_app: WSGIApp) -> None:
        self.django_app = django_app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None:
                return self._heartbeat(environ, start_response, int(match[1]))
        return self.django_app(environ, start_response)

    # --- The hot path ------------------------------------------------------------------------

    def _heartbeat(self, environ: dict[str, Any], start_response: Callable, node_id: int) -> Iterable[bytes]:
        secure = self._is_secure(environ)
        if not self._host_allowed(environ) or (settings.SECURE_SSL_REDIRECT and not secure):
            return self.django_app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self.django_app(environ, start_response)
        if length < 0 or length > api.MAX_NODE_PAYLOAD_BYTES:
            return self.django_app(environ, start_response)
        body = environ["wsgi.input"].read(length) if length else b""
        token = self._bearer(environ.get("HTTP_AUTHORIZATION"))
        # Django's request signals: reset the query log, close broken or expired connections (the
        # test client disconnects those receivers, as it does for Django's own handler).
        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            found = liveness.node_authenticate_heartbeat(token) if token is not None else None
            if found is None or found[0] != node_id:
                return self._to_django(environ, start_response, body)
            try:
                payload = api.HeartbeatIn.model_validate_json(body)
            except ValidationError:
                return self._to_django(environ, start_response, body)
            reply = api.heartbeat_handle(node_id, found[1], found[2], payload)
            return self._json(start_response, secure, 200, reply)
        except ApplicationError as exc:
            return self._json(start_response, secure, exc.status, {"message": exc.message, "extra": exc.extra})
        except Exception:
            logger.exception("Internal Server Error: %s", environ.get("PATH_INFO"))
            return self._json(start_response, secure, 500, {"message": "Internal server error.", "extra": {}})
        finally:
            signals.request_finished.send(sender=self.__class__)

    def _to_django(self, environ: dict[str, Any], start_response: Callable, body: bytes) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        return self.django_app(environ, start_response)

    @staticmethod
    def _json(start_response: Callable, secure: bool, status: int, data: Any) -> list[bytes]:
        content = orjson.dumps(data)
        start_response(
            _STATUS.get(status, f"{status} Error"),
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(content))),
                *_security_headers(secure),
            ],
        )
        return [content]

    @staticmethod
    def _bearer(header: str | None) -> str | None:
        """django-ninja's HttpBearer parsing: `Bearer <token>`, scheme case-insensitive."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip()

    @staticmethod
    def _host_allowed(environ: dict[str, Any]) -> bool:
        """Django's `HttpRequest.get_host()` check, without building a request."""
        if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
            host = environ["HTTP_X_FORWARDED_HOST"]
        elif "HTTP_HOST" in environ:
            host = environ["HTTP_HOST"]
        else:  # as Django builds it
            host = environ.get("SERVER_NAME", "")
            port = str(environ.get("SERVER_PORT", ""))
            if port != ("443" if environ.get("wsgi.url_scheme") == "https" else "80"):
                host = f"{host}:{port}"
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]
        domain, _port = split_domain_port(host)
        return bool(domain) and validate_host(domain, allowed)

    @staticmethod
    def _is_secure(environ: dict[str, Any]) -> bool:
        proxy = settings.SECURE_PROXY_SSL_HEADER
        if proxy:
            header, secure_value = proxy
            value = environ.get(header)
            if value is not None:
                return value.split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"
