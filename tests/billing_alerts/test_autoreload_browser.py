"""In Chromium, with localstripe's fake Stripe.js in place of js.stripe.com: a developer saves a
card for auto-reload through the Card Element (static/js/stripe_elements.js confirms the SetupIntent
with confirmCardSetup on localstripe and returns to the site the way Stripe's redirect would),
turns auto-reload on, and when the balance falls below the threshold the beat task charges the
card off-session and the page shows the reload credited once, also after Stripe's own webhook for
the same payment arrives. A declined card's refusal is shown in the form, which can be used again;
a Stripe.js that does not load is said so."""

from __future__ import annotations

import socket

import pytest
from playwright.sync_api import Page, expect

from billing import tasks
from billing.models import AutoReload, AutoReloadAttempt, LedgerTransaction
from billing.selectors import user_balances
from billing.services import hold_place
from tests.billing_alerts.conftest import PAYMENT_REQUIRED, USD, fill_localstripe_card, fund
from tests.billing_stripe.conftest import deliver, localstripe_event
from tests.e2e.login import log_in, verified_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
VISA = "4242424242424242"
DECLINED = "4000000000000002"  # localstripe refuses to attach it: "Your card was declined."


@pytest.fixture
def developer():
    return verified_user("ada@example.test")


def test_saved_card_reloads_credits_once_when_the_balance_falls_below_the_threshold(
    page: Page, live_server, developer, localstripe_js, stripe_client, webhook_secret
):
    fund(developer, 15 * USD)
    log_in(page, developer.email, "/billing/alerts/")

    page.get_by_test_id("save-card").click()
    page.wait_for_url("**/billing/auto-reload/card/")
    expect(page.locator("script:not([src])")).to_have_count(0)  # no inline script on the card pages
    fill_localstripe_card(page, VISA)
    page.get_by_role("button", name="Save the card").click()
    page.wait_for_url("**/billing/alerts/#auto-reload")
    expect(page.locator(".messages")).to_contain_text("Card saved: visa ending 4242.")
    expect(page.get_by_test_id("saved-card")).to_contain_text("visa ending 4242")
    reload = AutoReload.objects.get(user=developer)
    method = stripe_client.v1.payment_methods.retrieve(reload.stripe_payment_method_id)
    assert (method.card.last4, method.card.exp_year) == ("4242", 2030)  # what was typed

    page.get_by_label("Reload automatically").check()
    page.fill("input[name=threshold]", "10")
    page.fill("input[name=amount]", "25")
    page.get_by_test_id("autoreload-save").click()
    expect(page.locator(".messages")).to_contain_text("Auto-reload saved.")
    expect(page.get_by_test_id("autoreload-attempts")).to_have_count(0)  # $15 is above the threshold

    hold_place(user=developer, amount=7 * USD, reference_type="test", reference_id="spend")  # $8 left
    tasks.check_balances()  # the beat task: alerts, then auto-reload
    tasks.check_balances()  # above the threshold again: no second charge

    page.reload()
    rows = page.locator("[data-testid=autoreload-attempts] tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-status", "succeeded")
    expect(rows.first).to_contain_text("$25.00")

    # Stripe's own payment_intent.succeeded for that charge arrives later: nothing more is credited.
    attempt = AutoReloadAttempt.objects.get(user=developer)
    event = localstripe_event(stripe_client, "payment_intent.succeeded", attempt.stripe_payment_intent_id)
    assert deliver(live_server, event, webhook_secret).status == 200

    page.goto("/billing/")
    expect(page.get_by_test_id("balance-available")).to_have_text("$33.00")  # 15 − 7 + 25
    expect(page.get_by_test_id("balance-reserved")).to_have_text("$7.00")
    reload_rows = page.locator("[data-testid=transaction-row][data-kind=topup]").filter(has_text="Card auto-reload")
    expect(reload_rows).to_have_count(1)
    expect(reload_rows).to_contain_text("+$25.00")
    assert user_balances(user=developer).available == 33 * USD
    assert LedgerTransaction.objects.filter(kind="topup", reference_id=attempt.stripe_payment_intent_id).count() == 1


def test_a_declined_card_is_shown_in_the_form_and_another_card_can_be_tried(
    page: Page, expected_console_errors, live_server, developer, localstripe_js
):
    log_in(page, developer.email, "/billing/alerts/")
    page.get_by_test_id("save-card").click()
    page.wait_for_url("**/billing/auto-reload/card/")
    button = page.get_by_role("button", name="Save the card")

    fill_localstripe_card(page, DECLINED)
    button.click()
    expected_console_errors[PAYMENT_REQUIRED] += 1  # localstripe declines with a 402, as Stripe's API does
    expect(page.get_by_role("alert")).to_have_text("Your card was declined.")
    expect(button).to_be_enabled()
    assert page.url.endswith("/billing/auto-reload/card/")  # still on the form
    assert AutoReload.objects.get(user=developer).stripe_payment_method_id == ""

    fill_localstripe_card(page, VISA)
    button.click()
    page.wait_for_url("**/billing/alerts/#auto-reload")
    expect(page.get_by_test_id("saved-card")).to_contain_text("visa ending 4242")


def test_without_stripe_js_the_form_says_so(
    page: Page, expected_console_errors, live_server, developer, localstripe_js, settings
):
    with socket.socket() as closed:  # a port nothing listens on once this socket is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.STRIPE_JS_URL = f"http://127.0.0.1:{port}/v3/"
    expected_console_errors["Failed to load resource: net::ERR_CONNECTION_REFUSED"] = 1  # Stripe.js, and only that
    log_in(page, developer.email, "/billing/alerts/")
    page.get_by_test_id("save-card").click()
    page.wait_for_url("**/billing/auto-reload/card/")
    expect(page.get_by_role("alert")).to_have_text(
        "Stripe's card form could not be loaded. Check your connection and reload the page."
    )
    expect(page.get_by_role("button", name="Save the card")).to_be_disabled()
