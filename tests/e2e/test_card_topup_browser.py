"""In Chromium, with localstripe's fake Stripe.js in place of js.stripe.com: a card top-up from
/billing/topup/ through the Card Element (static/js/stripe_elements.js, confirmCardPayment) to the
status page, credited once when Stripe's signed payment_intent.succeeded webhook arrives; a failed
3D Secure check and a declined card are shown in the form, which stays usable.

localstripe's fake confirmCardPayment does only the second half of what Stripe.js does: it shows
its 3D Secure dialog and completes or fails the authentication of a PaymentIntent that already has
a card and was confirmed. The first half (create a PaymentMethod from the typed card, confirm the
intent) needs the secret key on localstripe, so `stripe_js_attaches` plays it with the SDK, with a
test card that asks for 3D Secure; the rest runs in the browser."""

# ruff: noqa: F811  (the tests take the localstripe fixtures imported below as arguments)
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import stripe
from playwright.sync_api import Page, expect

from billing.models import LedgerTransaction, TopUp
from billing.selectors import user_balances
from tests.billing_alerts.conftest import PAYMENT_REQUIRED, fill_localstripe_card, localstripe_js  # noqa: F401
from tests.billing_stripe.conftest import (  # noqa: F401  (the localstripe fixtures)
    deliver,
    localstripe_event,
    localstripe_url,
    stripe_client,
    stripe_settings,
    webhook_secret,
)
from tests.e2e.login import log_in, verified_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
USD = 1_000_000
# localstripe's test cards: both ask for 3D Secure; the second is then declined when charged.
AUTHENTICATED = "4000002500003155"
AUTHENTICATED_DECLINED = "4000008260003178"


@pytest.fixture
def developer():
    return verified_user("ada@example.test")


def open_pay_step(page: Page, email: str, amount: str) -> None:
    log_in(page, email, "/billing/topup/")
    page.get_by_test_id("topup-form").locator("input[name=amount]").fill(amount)
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_test_id("card-element").locator("input")).to_have_count(5)
    expect(page.locator("script:not([src])")).to_have_count(0)  # no inline script on the card pages


def stripe_js_attaches(client: stripe.StripeClient, page: Page, number: str) -> str:
    """Stripe.js's part that localstripe's fake leaves out (see the module doc): the typed card
    becomes a PaymentMethod of the page's PaymentIntent, confirmed; the bank asks for 3D Secure."""
    secret = page.get_by_test_id("payment-form").get_attribute("data-client-secret")
    intent_id = secret.split("_secret_")[0]
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
    assert client.v1.payment_intents.confirm(intent_id).status == "requires_action"
    return intent_id


def test_card_top_up_is_paid_in_the_page_and_credited_once_by_the_webhook(
    page: Page, live_server, developer, localstripe_js, stripe_client, webhook_secret
):
    open_pay_step(page, developer.email, "25")
    topup = TopUp.objects.get(user=developer)
    fill_localstripe_card(page, AUTHENTICATED)
    intent_id = stripe_js_attaches(stripe_client, page, AUTHENTICATED)

    page.get_by_role("button", name="Pay $25.00").click()
    page.get_by_role("button", name="Complete authentication").click()  # the fake's 3D Secure dialog
    page.wait_for_url(f"**/billing/topups/{topup.id}/?*")
    query = parse_qs(urlsplit(page.url).query)
    assert query["payment_intent"] == [intent_id]
    assert query["payment_intent_client_secret"][0].startswith(f"{intent_id}_secret_")
    assert query["redirect_status"] == ["succeeded"]
    status = page.get_by_test_id("topup-status")
    expect(status).to_have_attribute("data-status", "pending")  # paid, not credited before the webhook
    assert user_balances(user=developer).available == 0

    event = localstripe_event(stripe_client, "payment_intent.succeeded", intent_id)
    assert deliver(live_server, event, webhook_secret).status == 200
    expect(status).to_have_attribute("data-status", "succeeded")  # the page polls every 3 s
    expect(status).to_contain_text("Paid. $25.00 was added to your credits.")
    expect(status).to_contain_text("Available now: $25.00.")

    assert deliver(live_server, event, webhook_secret).status == 200  # Stripe delivers again
    page.goto("/billing/")
    expect(page.get_by_test_id("balance-available")).to_have_text("$25.00")
    topups = page.locator("[data-testid=transaction-row][data-kind=topup]")
    expect(topups).to_have_count(1)
    expect(topups).to_contain_text("+$25.00")
    assert LedgerTransaction.objects.filter(kind="topup", reference_id=intent_id).count() == 1


def test_a_failed_check_and_a_declined_card_are_shown_in_the_form(
    page: Page, expected_console_errors, live_server, developer, localstripe_js, stripe_client
):
    open_pay_step(page, developer.email, "25")
    pay = page.get_by_role("button", name="Pay $25.00")
    message = page.get_by_test_id("payment-form").get_by_role("alert")

    fill_localstripe_card(page, AUTHENTICATED)
    stripe_js_attaches(stripe_client, page, AUTHENTICATED)
    pay.click()
    page.get_by_role("button", name="Fail authentication").click()
    expect(message).to_have_text("The provided PaymentMethod has failed authentication.")
    expect(pay).to_be_enabled()

    fill_localstripe_card(page, AUTHENTICATED_DECLINED)
    stripe_js_attaches(stripe_client, page, AUTHENTICATED_DECLINED)
    pay.click()
    page.get_by_role("button", name="Complete authentication").click()
    expected_console_errors[PAYMENT_REQUIRED] += 1  # the decline is localstripe's 402, as from Stripe's API
    expect(message).to_have_text("Your card was declined.")
    expect(pay).to_be_enabled()

    assert urlsplit(page.url).path == "/billing/topup/"  # still on the pay step
    assert TopUp.objects.get(user=developer).status == "pending"
    assert user_balances(user=developer).available == 0
