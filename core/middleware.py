"""Errors under /api/ are JSON like every other API error, even when no API view answered."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

API_PREFIX = "/api/"


def _declared_length(request: HttpRequest) -> int:
    text = request.META.get("CONTENT_LENGTH") or ""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else 0


def body_too_large(request: HttpRequest) -> HttpResponse | None:
    """A 413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE, answered before anything reads it
    (Django would raise RequestDataTooBig wherever the body is first read: a bare 400 page, or
    a 500 from code that does not expect it)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None or _declared_length(request) <= limit:
        return None
    message = f"The request body is too large: at most {limit:,} bytes."
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"message": message, "extra": {"limit_bytes": limit}}, status=413)
    page = f"<!doctype html><title>Request too large</title><h1>Request too large</h1><p>{escape(message)}</p>"
    return HttpResponse(page, status=413)


class ApiJsonErrorsMiddleware:
    """An unknown API path (Django's HTML 404), a method a route does not take (django-ninja's
    empty 405) or a request Django refused before any view (its HTML 400, e.g. too many fields)
    becomes `{"message": ..., "extra": {}}`, so a script gets an answer it can read. A body over
    the upload limit is a 413 for pages and the API alike, before anything reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        too_large = body_too_large(request)
        if too_large is not None:
            return too_large
        response = self.get_response(request)
        if (
            not request.path.startswith(API_PREFIX)
            or response.status_code not in (400, 404, 405)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        if response.status_code == 400:
            message = "The request could not be read (malformed, or too many fields)."
            return JsonResponse({"message": message, "extra": {}}, status=400)
        if response.status_code == 404:
            message = f"No API route {request.method} {request.path}: the routes are listed at /api/v1/docs."
            return JsonResponse({"message": message, "extra": {}}, status=404)
        allowed = response.get("Allow", "")
        message = f"{request.method} is not allowed on {request.path}; use {allowed or 'another method'}."
        replacement = JsonResponse(
            {"message": message, "extra": {"allowed": allowed.split(", ") if allowed else []}}, status=405
        )
        if allowed:
            replacement["Allow"] = allowed
        return replacement
