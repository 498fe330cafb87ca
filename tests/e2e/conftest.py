"""Chromium through Playwright (sync API) against pytest-django's live server.

Chromium is Debian's package at /usr/bin/chromium (Playwright cannot download its own build
here). Without it the e2e tests skip on a developer's machine, but fail under CI=true: a CI run
that silently skipped the browser would prove nothing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_sqlite import sqlite_reads_do_not_wait
from tests.needs import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Nothing may call outside hosts from this machine; these keep Chromium quiet.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough for a cold Django + SQLite request on a 2-core machine, short enough to fail fast.
TIMEOUT_MS = 10_000


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium (Debian's package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -r requirements/dev.txt")

    # Playwright's sync API keeps an asyncio loop in this thread, and Django refuses ORM calls
    # from a thread with a running loop. The test's own DB work is synchronous, so allow it
    # for as long as the browser lives, and put the variable back after.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def live_sqlite_reads(transactional_db, page) -> Iterator[None]:
    """tests.live_sqlite's readers that do not wait, for a test whose pages read what other threads
    or processes write (an agent, a sweeper, a watcher). After `page`: with Playwright's loop running
    in this thread, Django hands the test body another connection (asgiref's context-local storage)
    than a fixture set up before the browser. A module asks with pytest.mark.usefixtures."""
    with sqlite_reads_do_not_wait():
        yield


@pytest.fixture
def viewport() -> dict[str, int]:
    """The browser window's size; a test module overrides it (a phone, say)."""
    return {"width": 1280, "height": 900}


@pytest.fixture
def expected_console_errors() -> Counter[str]:
    """The console errors (and uncaught exceptions) a test means its page to log, each with how
    many times; `page` fails the test unless the page logged exactly these. None, unless the test
    adds them where it causes them: `expected_console_errors[PAYMENT_REQUIRED] += 1` for a
    declined card's 402 from Stripe's API, or a script that cannot load."""
    return Counter()


@pytest.fixture
def page(browser, live_server, settings, viewport, expected_console_errors) -> Iterator[object]:
    # DEBUG=0 in tests selects the manifest storage, whose manifest only `collectstatic` writes;
    # the live server serves static files from the finders, so plain storage is the honest match.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    context = browser.new_context(base_url=live_server.url, viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(message) -> None:
        # The site ships no favicon; Chromium asks for one anyway.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            errors.append(message.text)

    page.on("console", on_console)
    try:
        yield page
    finally:
        context.close()
    logged = Counter(errors)
    if logged != expected_console_errors:
        unexpected, missing = logged - expected_console_errors, expected_console_errors - logged
        pytest.fail(
            f"the page logged JavaScript errors {dict(logged)}, the test expected {dict(expected_console_errors)}"
            f" (unexpected: {dict(unexpected)}; missing: {dict(missing)})",
            pytrace=False,
        )
