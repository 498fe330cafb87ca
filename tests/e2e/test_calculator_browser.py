"""The earnings calculator in Chromium: the result follows the form as it is typed into (htmx, no
reload), an error shows in place, and the URL keeps the figures (a shared link or the back
button gives the same estimate)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_the_estimate_follows_the_form_without_a_reload(page: Page, live_server):
    page.goto("/provider/calculator/")
    points = page.get_by_test_id("figure-points")
    expect(points).to_contain_text("= 0 points an era")  # the example: a new node in tier 7
    expect(page.get_by_test_id("tier7-note")).to_be_visible()
    page.evaluate("window.__sameDocument = true")

    page.fill("#calc_tier", "4")
    expect(points).to_contain_text("= 780 points an era")  # 500 × 1.2 × (1 + 0.5 × 0.6)
    expect(page.get_by_test_id("tier7-note")).to_have_count(0)
    expect(page.get_by_test_id("figure-spon")).to_contain_text("2,372.5 $SPON")
    assert page.evaluate("window.__sameDocument") is True  # swapped in place, not reloaded
    expect(page).to_have_url(re.compile(r"/provider/calculator/\?.*tier=4"))

    page.fill("#calc_uptime", "150")
    expect(page.get_by_test_id("calculator-errors")).to_contain_text("Uptime %: A percentage from 0 to 100.")
    page.fill("#calc_uptime", "49")
    expect(points).to_contain_text("uptime 49% < 50%")
    assert page.evaluate("window.__sameDocument") is True


def test_the_form_works_without_javascript(browser, live_server, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/provider/calculator/")
        page.fill("#calc_tier", "4")
        page.locator("#calculator-form button[type=submit]").click()
        expect(page.get_by_test_id("figure-points")).to_contain_text("= 780 points an era")
        assert "tier=4" in page.url
    finally:
        context.close()
