"""The runway as a renter reads it on a deployment's page and on the billing page, with every figure
worked out by hand: the lease's price from the node's prices, the holds, the usage not settled yet,
what a reservation and a paused rental leave out.

Every clock is held still (time_machine, tick=False) at moments derived from today, so the usage
accrued between two steps is exact."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from billing.models import UsageMeter
from billing.selectors import user_balances
from billing.usage import meter_close, meter_pause
from marketplace.deployments import services as deployments
from tests.billing_alerts.conftest import T0, USD, fund, rent, reserve
from tests.factories import make_node, make_provider

SPEC = """version: "2.0"
services:
  trainer:
    image: pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
    command: ["python", "train.py"]
    resources:
      cpu: {units: 4}
      memory: {size: 16Gi}
      storage: [{size: 100Gi}]
      gpu: {units: 1, model: [rtx4090]}
    price: {token: USD, amount: 1.00}
deployment:
  duration: 1h
  mode: fizz
  tiers: [community]
"""
# The node: $0.796 per GPU-hour and $0.73 per core-month (730 h: $0.001 per core-hour); memory and
# storage free. The deployment's share: 1 GPU and 4 cores = 0.796 + 0.004 = $0.80/h.
LEASE_PRICE = 800_000


def runway_card(html: str) -> str:
    found = re.search(r'<div class="card runway[^"]*"[^>]*data-testid="runway".*?</div>', html, re.S)
    assert found, "no runway card on the page"
    return found.group(0)


def text_of(card: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", card)).strip()


@pytest.fixture
def spending(renter, provider, settings):
    """At T0: $30 in; a monthly reservation at $0.01/h (15% off: 0.01 × 730 × 0.85 = $6.205 up front);
    the deployment, matched to the node at $0.80/h with its hour held; a $1.20/h rental with its
    hour held; a $2.00/h rental with its hour held, paused at T0 + 10 min (its node went silent)."""
    settings.MONTHLY_RESERVATION_DISCOUNT = Decimal("0.15")
    settings.DEPLOYMENT_HOLD_HOURS = 24  # the deployment's 1 h duration holds 1 h
    node = make_node(
        provider=make_provider(),
        gpu_price_per_hour_micros=796_000,
        cpu_price_per_core_month_micros=730_000,
        memory_price_per_gb_month_micros=0,
        storage_price_per_gb_month_micros=0,
    )
    with time_machine.travel(T0, tick=False):
        fund(renter, 30 * USD)
        reserve(renter, provider, price=10_000)
        deployment = deployments.deployment_create(user=renter, source=SPEC)
        lease = deployments.match_order(order_id=deployment.orders.get().id).lease
        rent(renter, provider, price=1_200_000, hold=1_200_000)
        paused = rent(renter, provider, price=2 * USD, hold=2 * USD)
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False):
        meter_pause(meter_id=paused.id, at=T0 + timedelta(minutes=10))
    assert lease is not None and lease.node_id == node.id
    meter = UsageMeter.objects.get(id=lease.meter_id)
    # The hand-computed price and hold are the ones the match locked in.
    assert (meter.price_per_hour, meter.hold.amount, meter.started_at) == (LEASE_PRICE, LEASE_PRICE, T0)
    # 30 − 6.205 − 0.80 − 1.20 − 2.00 = $19.795 available.
    assert user_balances(user=renter).available == 19_795_000
    return deployment


def test_deployment_page_and_billing_page_show_the_runway_worked_out_by_hand(spending, renter, renter_client):
    # At T0 + 30 min: half an hour used on each running rental, none of it settled.
    #   held: (0.80 − 0.40) + (1.20 − 0.60) = $1.00 (the paused rental's hold is not counted)
    #   funds: 19.795 + 1.00 = $20.795;  spend: 0.80 + 1.20 = $2.00/h (the reservation and the
    #   paused rental spend nothing more)
    #   runway: 20.795 / 2.00 = 10.3975 h = 37,431 s = 10 h 23 min 51 s
    with time_machine.travel(T0 + timedelta(minutes=30), tick=False):
        deployment_page = renter_client.get(f"/deployments/{spending.id}/")
        billing_page = renter_client.get("/billing/")
        balance = renter_client.get("/api/v1/billing/balance").json()

    assert deployment_page.status_code == billing_page.status_code == 200
    for page, link in ((deployment_page, "Top up or set up auto-reload"), (billing_page, "Alerts and auto-reload")):
        card = runway_card(page.content.decode())
        assert 'data-seconds="37431"' in card and 'data-spend-micros="2000000"' in card
        assert "warn" in card.split(">", 1)[0]  # less than a day left
        assert text_of(card) == (
            "Runway: your credits last about 10 hours 23 minutes at $2.00/h (2 running rentals; 1 monthly "
            f"reservation paid up front, not counted; 1 paused, not charged). {link}"
        )
    assert (balance["runway_seconds"], balance["spend_per_hour_micros"]) == (37431, 2_000_000)


def test_the_runway_moves_with_the_clock_and_a_day_or_more_is_not_a_warning(spending, renter, renter_client):
    # At T0 + 45 min: 0.75 h used of each. held: (0.80 − 0.60) + (1.20 − 0.90) = $0.50;
    # funds 19.795 + 0.50 = $20.295 at $2.00/h = 10.1475 h = 36,531 s (15 min less, as 15 min passed).
    with time_machine.travel(T0 + timedelta(minutes=45), tick=False):
        later = runway_card(renter_client.get(f"/deployments/{spending.id}/").content.decode())
    assert 'data-seconds="36531"' in later and "about 10 hours 8 minutes at $2.00/h" in text_of(later)

    # $30 more: funds $50.295 at $2.00/h = 25.1475 h = 90,531 s = 1 day 1 hour 8 min 51 s.
    fund(renter, 30 * USD)
    with time_machine.travel(T0 + timedelta(minutes=45), tick=False):
        card = runway_card(renter_client.get("/billing/").content.decode())
    assert 'data-seconds="90531"' in card and "about 1 day 1 hour at $2.00/h" in text_of(card)
    assert "warn" not in card.split(">", 1)[0]


def test_a_closed_deployment_shows_no_runway_and_nothing_spending_says_so(spending, renter, renter_client):
    with time_machine.travel(T0 + timedelta(minutes=30), tick=False):
        deployments.deployment_close(deployment=spending)
        closed = renter_client.get(f"/deployments/{spending.id}/").content.decode()
    assert closed and 'data-testid="runway"' not in closed

    with time_machine.travel(T0 + timedelta(minutes=30), tick=False):
        for meter in UsageMeter.objects.filter(renter=renter, closed_at__isnull=True, reservation_total__isnull=True):
            meter_close(meter=meter)
        card = runway_card(renter_client.get("/billing/").content.decode())
    assert 'data-seconds=""' in card and 'data-spend-micros="0"' in card
    assert text_of(card) == ("Runway: No running rental is spending credits (1 monthly reservation paid up front).")


def test_another_users_deployment_page_is_not_found(spending, outsider):
    client = Client()
    client.force_login(outsider)
    with time_machine.travel(T0 + timedelta(minutes=30), tick=False):
        assert client.get(f"/deployments/{spending.id}/").status_code == 404
        card = runway_card(client.get("/billing/").content.decode())
    assert "No running rental is spending credits" in text_of(card)
    assert 'data-spend-micros="0"' in card
