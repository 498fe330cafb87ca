"""The exceptions the API client raises: one per kind of answer a script handles differently.

Every error the server sends has the shape `{"message": str, "extra": object}`; validation errors
list each bad field in `extra.errors` as `{"field", "message"[, "line"]}`, other errors may name one
field as `extra.field`. `ApiError.fields` is that list in one shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spheron_sdk.client import RateLimit


class ApiError(Exception):
    """The server refused the call (or could not be reached: see NetworkError)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        fields: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.fields = fields or []
        self.extra = extra or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as the CLI prints it with --json."""
        return {
            "type": type(self).__name__,
            "status": self.status,
            "message": self.message,
            "fields": self.fields,
            "extra": self.extra,
        }


class ValidationError(ApiError):
    """400 or 422: the input was wrong; `fields` says where."""


class AuthError(ApiError):
    """401: no API key, or a wrong or revoked one."""


class PermissionDenied(ApiError):
    """403: the key's user may not do this (e.g. not a provider)."""


class NotFound(ApiError):
    """404: no such object, or another user's."""


class InsufficientFunds(ApiError):
    """402: not enough credits for the hold; `top_up_url` says where to add some."""

    @property
    def top_up_url(self) -> str | None:
        return self.extra.get("top_up_url")


class Conflict(ApiError):
    """409: the object is not in a state that allows this."""


class RateLimited(ApiError):
    """429 after the client's retries: `retry_after` is the server's Retry-After, in seconds;
    `rate_limit` its RateLimit-* headers (spheron_sdk.client.RateLimit), when it sent them."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        rate_limit: RateLimit | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.rate_limit = rate_limit

    def to_dict(self) -> dict[str, Any]:
        limit = self.rate_limit.to_dict() if self.rate_limit is not None else None
        return {**super().to_dict(), "retry_after": self.retry_after, "rate_limit": limit}


class ServerError(ApiError):
    """5xx after the client's retries."""


class NetworkError(ApiError):
    """The server could not be reached, or the connection dropped, after the client's retries."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: AuthError,
    402: InsufficientFunds,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    429: RateLimited,
}


def error_fields(extra: dict[str, Any], message: str) -> list[dict[str, Any]]:
    """`extra.errors` as given, or the one `extra.field` with the message."""
    errors = extra.get("errors")
    if isinstance(errors, list):
        return [item for item in errors if isinstance(item, dict)]
    field = extra.get("field")
    if isinstance(field, str):
        return [{"field": field, "message": message}]
    return []


def error_for(
    status: int, body: Any, *, retry_after: float | None = None, rate_limit: RateLimit | None = None
) -> ApiError:
    """The exception for an HTTP error answer with the decoded body (or its text)."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
        extra = body.get("extra") if isinstance(body.get("extra"), dict) else {}
    elif isinstance(body, dict) and isinstance(body.get("detail"), str):  # a framework's own error
        message, extra = body["detail"], {}
    else:
        text = body if isinstance(body, str) else ""
        message = text.strip()[:300] or f"HTTP {status}"
        extra = {}
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    fields = error_fields(extra, message)
    if kind is RateLimited:
        if retry_after is None and isinstance(extra.get("retry_after_seconds"), int | float):
            retry_after = float(extra["retry_after_seconds"])
        return RateLimited(
            message, retry_after=retry_after, rate_limit=rate_limit, status=status, fields=fields, extra=extra
        )
    return kind(message, status=status, fields=fields, extra=extra)
