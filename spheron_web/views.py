from __future__ import annotations

from urllib.parse import urlencode

from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from marketplace.catalog.selectors import market_board


def home(request: HttpRequest) -> HttpResponse:
    board = [row for row in market_board() if row.offers]
    board.sort(key=lambda row: -row.offers)
    return render(
        request,
        "home.html",
        {
            "board": board[:8],
            "total_offers": sum(row.offers for row in board),
            "total_free_gpus": sum(row.free_gpus for row in board),
        },
    )


def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page that names no icon (the admin's, say)."""
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))


def admin_login(request: HttpRequest) -> HttpResponse:
    """/admin/login/ is the site's own sign-in (allauth, which rate-limits failed attempts), never a
    second password form without limits. The admin still checks staff status on every page."""
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
        next_url = reverse("admin:index")
    user = request.user
    if user.is_authenticated:
        if user.is_active and user.is_staff:
            return redirect(next_url)
        # Sending a signed-in non-staff user to the site's login would bounce straight back here.
        return render(request, "accounts/admin_not_staff.html", status=403)
    return redirect(f"{reverse('account_login')}?{urlencode({'next': next_url})}")
