"""Personas and money for the runway, low-balance alert and auto-reload tests."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from billing.models import LedgerTransaction, UsageMeter
from billing.services import topup_credit
from billing.usage import meter_open, reservation_open
from tests.billing_stripe.conftest import (  # noqa: F401  (the localstripe fixtures, shared)
    localstripe_url,
    stripe_client,
    stripe_settings,
    webhook_secret,
)
from tests.e2e.conftest import (  # noqa: F401  (Chromium, for the browser tests)
    browser,
    expected_console_errors,
    page,
    viewport,
)
from tests.factories import make_user

USD = 1_000_000
# Noon two days before today (tests never depend on the date).
T0 = datetime.combine(timezone.now().astimezone(UTC).date() - timedelta(days=2), time(12), tzinfo=UTC)
_keys = count(1)
# How Chromium logs a card localstripe declines: its API answers 402, as Stripe's does.
PAYMENT_REQUIRED = "Failed to load resource: the server responded with a status of 402 (Payment Required)"


@pytest.fixture
def renter(transactional_db) -> User:
    return make_user(email="renter@example.test")


@pytest.fixture
def provider(transactional_db) -> User:
    return make_user(email="provider@example.test", is_provider=True)


@pytest.fixture
def outsider(transactional_db) -> User:
    return make_user(email="outsider@example.test")


@pytest.fixture
def renter_client(renter) -> Client:
    client = Client()
    client.force_login(renter)
    return client


@pytest.fixture
def localstripe_js(settings, request) -> str:
    """The card pages load localstripe's fake Stripe.js (its Card Element, confirmCardSetup and
    confirmCardPayment talk to the same localstripe as the server): js.stripe.com is not
    reachable from here."""
    request.getfixturevalue("stripe_settings")  # keys and STRIPE_API_BASE: the localstripe server
    url = f"{settings.STRIPE_API_BASE}/js.stripe.com/v3/"
    with urllib.request.urlopen(url, timeout=5) as answer:  # the same package as the server: no skip
        assert "confirmCardSetup" in answer.read().decode(), f"localstripe serves no fake Stripe.js at {url}"
    settings.STRIPE_JS_URL = url
    return url


def fill_localstripe_card(tab, number: str) -> None:
    """Type a card into localstripe's Card Element (one text input per field, named by its
    placeholder) on a page of static/js/stripe_elements.js; it expires 12/2030."""
    element = tab.get_by_test_id("card-element")
    for field, value in (("number", number), ("exp_month", "12"), ("exp_year", "30"), ("cvc", "123")):
        element.locator(f"input[placeholder={field}]").fill(value)
    element.locator("input[placeholder=postal_code]").fill("10001")


def fund(user: User, amount: int) -> LedgerTransaction:
    key = f"test-topup:{next(_keys)}"
    return topup_credit(user=user, amount=amount, reference_type="stripe_event", reference_id=key, idempotency_key=key)


def rent(renter: User, provider: User, *, price: int, hold: int, started_at: datetime = T0) -> UsageMeter:
    """An hourly rental at `price` micro-USD/h with `hold` held for it."""
    return meter_open(
        renter=renter,
        payee=provider,
        price_per_hour=price,
        fee_rate=Decimal("0.05"),
        hold_amount=hold,
        reference_type="lease",
        reference_id=str(next(_keys)),
        started_at=started_at,
    )


def reserve(renter: User, provider: User, *, price: int, started_at: datetime = T0) -> UsageMeter:
    return reservation_open(
        renter=renter,
        payee=provider,
        price_per_hour=price,
        fee_rate=Decimal("0.05"),
        reference_type="lease",
        reference_id=str(next(_keys)),
        started_at=started_at,
    )
