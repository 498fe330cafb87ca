"""Errors under /api/ are JSON like every other API error, even when no API view answered."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/"


class ApiJsonErrorsMiddleware:
    """An unknown API path (Django's HTML 404) or a method a route does not take (django-ninja's
    empty 405) becomes `{"message": ..., "extra": {}}`, so a script gets an answer it can read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            not request.path.startswith(API_PREFIX)
            or response.status_code not in (404, 405)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
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
