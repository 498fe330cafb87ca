"""htmx page refreshes: when a request wants only a fragment, and the headers such a page needs."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.http import urlencode

# A page that answers with a fragment or the whole page by these headers must say so, or a cache
# (or the browser's back button) serves the fragment as the page.
REFRESH_VARY = "HX-Request, HX-Target, HX-History-Restore-Request"


def fragment_requested(request: HttpRequest, target_id: str) -> bool:
    """True when htmx asks to swap only the element `target_id`."""
    # htmx 4 names the target "tag#id", htmx 2 just "id"; a history restore needs the whole page.
    htmx = request.htmx  # type: ignore[attr-defined]
    return bool(htmx) and not htmx.history_restore_request and (htmx.target or "").endswith(target_id)


def vary_on_htmx(response: HttpResponse) -> HttpResponse:
    response["Vary"] = REFRESH_VARY
    return response


def push_filters_url(request: HttpRequest, response: HttpResponse, active: dict[str, Any], page_number: int) -> None:
    """On an htmx request, the URL the browser remembers: the cleaned filter set (not every empty
    form field) and the page past the first."""
    if request.htmx:  # type: ignore[attr-defined]
        query = urlencode({**active, **({"page": page_number} if page_number > 1 else {})})
        response["HX-Push-Url"] = f"{request.path}?{query}" if query else request.path
