from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static

from marketplace.selectors import market_board


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
