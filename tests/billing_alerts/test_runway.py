"""Runway: funds (available + what is left on running hourly holds, less unsettled usage) divided
by the hourly prices of the running hourly rentals, worked out by hand."""

from __future__ import annotations

from datetime import timedelta

from billing.runway import duration_words, next_hour_shortfall, user_runway
from billing.usage import meter_pause, usage_settle_all
from tests.billing_alerts.conftest import T0, USD, fund, rent, reserve


def test_no_rentals_no_runway(renter):
    fund(renter, 50 * USD)
    runway = user_runway(user=renter, now=T0)
    assert (runway.spend_per_hour, runway.seconds, runway.available) == (0, None, 50 * USD)
    assert runway.text == "No running rental is spending credits"


def test_runway_by_hand(renter, provider):
    fund(renter, 100 * USD)
    rent(renter, provider, price=1_200_000, hold=1_200_000)  # $1.20/h, an hour held
    rent(renter, provider, price=800_000, hold=800_000)  # $0.80/h
    # Available: 100 - 1.20 - 0.80 = $98; held $2; after 30 minutes $1 of it is used, not settled.
    runway = user_runway(user=renter, now=T0 + timedelta(minutes=30))
    assert runway.available == 98 * USD
    assert runway.held == 1 * USD
    assert runway.spend_per_hour == 2 * USD
    # $99 at $2/h = 49.5 h = 2 days 1 hour 30 minutes.
    assert runway.seconds == 49 * 3600 + 1800
    assert runway.text == "about 2 days 1 hour at $2.00/h"


def test_settlement_does_not_change_the_runway(renter, provider):
    fund(renter, 10 * USD)
    rent(renter, provider, price=1_200_000, hold=1_200_000)
    now = T0 + timedelta(minutes=90)
    before = user_runway(user=renter, now=now)
    usage_settle_all(now=now)  # charges 1.5 h and extends the hold to cover the next hour
    after = user_runway(user=renter, now=now)
    assert before.funds == after.funds == 10 * USD - 1_800_000
    # $8.20 at $1.20/h = 6.8333 h = 6 h 50 min.
    assert after.seconds == 6 * 3600 + 50 * 60
    assert after.text == "about 6 hours 50 minutes at $1.20/h"


def test_reservations_and_paused_rentals_count_as_no_spend(renter, provider):
    fund(renter, 1000 * USD)
    reserve(renter, provider, price=100_000)  # the month is paid up front
    paused = rent(renter, provider, price=2 * USD, hold=2 * USD)
    meter_pause(meter_id=paused.id, at=T0 + timedelta(minutes=10))
    rent(renter, provider, price=500_000, hold=500_000)
    runway = user_runway(user=renter, now=T0 + timedelta(minutes=20))
    assert (runway.running, runway.reservations, runway.paused) == (1, 1, 1)
    assert runway.spend_per_hour == 500_000


def test_shortfall_is_what_the_next_settlement_would_lack(renter, provider):
    fund(renter, 1_500_000)
    rent(renter, provider, price=1 * USD, hold=1 * USD)  # $0.50 left available
    # After 90 minutes: 1.5 h accrued, $1 held. Covering it and the next hour: 1.5 + 1 - 1 = $1.50.
    assert next_hour_shortfall(user=renter, now=T0 + timedelta(minutes=90)) == 1 * USD
    assert next_hour_shortfall(user=renter, now=T0 + timedelta(minutes=10)) == 0


def test_duration_words():
    assert duration_words(59) == "less than a minute"
    assert duration_words(12 * 60 + 5) == "about 12 minutes"
    assert duration_words(3 * 86400 + 4 * 3600 + 59 * 60) == "about 3 days 4 hours"
    assert duration_words(86400 + 30) == "about 1 day"
    assert duration_words(2 * 3600 + 60) == "about 2 hours 1 minute"


def test_billing_page_and_api_show_the_runway(renter, provider, renter_client):
    fund(renter, 100 * USD)
    rent(renter, provider, price=1_200_000, hold=1_200_000, started_at=T0)
    page = renter_client.get("/billing/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="runway"' in html and "at $1.20/h" in html
    body = renter_client.get("/api/v1/billing/balance").json()
    assert body["spend_per_hour_micros"] == 1_200_000
    assert body["spend_per_hour"] == "1.200000"
    assert body["runway_seconds"] is not None and body["runway_seconds"] > 0
    assert body["runway_text"].endswith("at $1.20/h")
