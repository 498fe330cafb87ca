"""/fizz/: install the node agent from this marketplace (a page, a shell script and the SDK's wheel).

Public: nothing here is secret (the token is made on the tokens page and typed by the provider).
"""

from __future__ import annotations

import shlex

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from providers.fizz_dist import FizzWheel, fizz_wheel


def site_url(request: HttpRequest) -> str:
    """This server's base URL as the provider reached it: the scheme honours BEHIND_TLS_PROXY
    (X-Forwarded-Proto) and the host is the request's, checked against ALLOWED_HOSTS; the same
    base the tokens page puts in its `fizz start` command."""
    return request.build_absolute_uri("/").rstrip("/")


def _install_context(request: HttpRequest, wheel: FizzWheel) -> dict[str, str]:
    site = site_url(request)
    return {
        "site": site,
        "script_url": site + reverse("fizz:install_script"),
        "wheel_url": site + reverse("fizz:wheel", args=[wheel.filename]),
        "tokens_url": site + reverse("providers:tokens"),
        "version": wheel.version,
        "wheel_filename": wheel.filename,
        "wheel_sha256": wheel.sha256,
    }


@require_safe
def install_page(request: HttpRequest) -> HttpResponse:
    context = _install_context(request, fizz_wheel())
    context["install_command"] = f"curl -fsSL {context['script_url']} | sh"
    return render(request, "providers/install.html", context)


@require_safe
def install_script(request: HttpRequest) -> HttpResponse:
    """The POSIX sh installer, with this server's URL and the current wheel's name and sha256 in it.
    text/plain so a browser shows it for reading before anyone pipes it to sh."""
    context = {key: shlex.quote(value) for key, value in _install_context(request, fizz_wheel()).items()}
    response = render(request, "providers/install.sh", context, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-cache"  # it names the current wheel
    return response


@require_safe
def wheel(request: HttpRequest, filename: str) -> FileResponse:
    current = fizz_wheel()
    if filename != current.filename:
        raise Http404(f"This server serves {current.filename}.")
    response = FileResponse(
        current.path.open("rb"),
        as_attachment=True,
        filename=current.filename,
        content_type="application/octet-stream",  # what package indexes send for wheels
    )
    response["ETag"] = f'"{current.sha256}"'
    response["Cache-Control"] = "no-cache"  # same file name for every build of one version
    return response
