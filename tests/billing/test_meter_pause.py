"""A usage meter paused while its rental's node is silent: nothing accrues after the pause, for a
settlement, a close or a reservation's month, and a resume excludes the paused time once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import Hold, UsageMeter
from billing.selectors import user_balances
from billing.usage import (
    RESERVATION_SECONDS,
    meter_accrued,
    meter_close,
    meter_pause,
    meter_resume,
    reservation_open,
    usage_settle_all,
    usage_settle_batch,
)
from tests.billing.conftest import T0, USD, assert_ledger_consistent, fund
from tests.billing.test_holds_and_usage import open_meter

pytestmark = [pytest.mark.django_db, pytest.mark.calendar]

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def test_a_settlement_while_paused_charges_only_up_to_the_pause(renter, provider):
    fund(renter, 5 * USD)
    meter = open_meter(renter, provider, price=1 * USD, hold=2 * USD)
    meter_pause(meter_id=meter.id, at=T0 + 30 * MINUTE)

    usage_settle_all(now=T0 + HOUR)
    usage_settle_all(now=T0 + 2 * HOUR)  # still silent an hour later: nothing more

    meter.refresh_from_db()
    assert meter.charged == 500_000
    assert meter_accrued(meter, now=T0 + 5 * HOUR) == 500_000
    assert user_balances(user=renter).reserved == 2 * USD - 500_000
    assert_ledger_consistent()


def test_pausing_again_keeps_the_first_pause(renter, provider):
    fund(renter, 5 * USD)
    meter = open_meter(renter, provider)
    meter_pause(meter_id=meter.id, at=T0 + 10 * MINUTE)
    again = meter_pause(meter_id=meter.id, at=T0 + 40 * MINUTE)
    assert again.paused_at == T0 + 10 * MINUTE


def test_a_pause_before_the_start_counts_from_the_start(renter, provider):
    fund(renter, 5 * USD)
    meter = open_meter(renter, provider)
    paused = meter_pause(meter_id=meter.id, at=T0 - 5 * MINUTE)
    assert paused.paused_at == T0
    resumed = meter_resume(meter_id=meter.id, at=T0 + 6 * MINUTE)
    assert resumed.excluded_seconds == 6 * 60
    assert meter_accrued(resumed, now=T0 + 36 * MINUTE) == 500_000


def test_a_resume_excludes_exactly_the_paused_time_once(renter, provider):
    fund(renter, 5 * USD)
    meter = open_meter(renter, provider, price=1 * USD, hold=4 * USD)
    usage_settle_all(now=T0 + 30 * MINUTE)  # settled before the silence
    meter_pause(meter_id=meter.id, at=T0 + HOUR)
    usage_settle_all(now=T0 + HOUR + 10 * MINUTE)  # during it
    meter.refresh_from_db()
    assert meter.charged == 1 * USD

    resumed = meter_resume(meter_id=meter.id, at=T0 + HOUR + 15 * MINUTE)
    again = meter_resume(meter_id=meter.id, at=T0 + HOUR + 50 * MINUTE)  # a repeated hook

    assert resumed.paused_at is None and resumed.excluded_seconds == 15 * 60
    assert again.excluded_seconds == 15 * 60
    # Right after the resume the cost is what it was at the pause, and goes on from there.
    assert meter_accrued(again, now=T0 + HOUR + 15 * MINUTE) == 1 * USD
    usage_settle_all(now=T0 + 3 * HOUR)
    closed = meter_close(meter=meter, now=T0 + 3 * HOUR)
    assert closed.charged == 2 * USD + 750_000  # 3 h less the 15 min of silence
    assert user_balances(user=renter).available == 5 * USD - closed.charged
    assert_ledger_consistent()


def test_closing_a_paused_meter_earlier_than_the_pause_charges_until_the_close(renter, provider):
    fund(renter, 5 * USD)
    meter = open_meter(renter, provider, price=1 * USD, hold=2 * USD)
    meter_pause(meter_id=meter.id, at=T0 + 30 * MINUTE)

    closed = meter_close(meter=meter, now=T0 + 20 * MINUTE)

    assert closed.charged == 1 * USD // 3
    assert closed.hold.status == Hold.Status.CLOSED
    assert user_balances(user=renter).available == 5 * USD - 1 * USD // 3
    assert user_balances(user=renter).reserved == 0
    assert_ledger_consistent()


def test_closing_a_paused_meter_later_charges_only_up_to_the_pause(renter, provider):
    fund(renter, 5 * USD)
    meter = open_meter(renter, provider, price=1 * USD, hold=2 * USD)
    meter_pause(meter_id=meter.id, at=T0 + 30 * MINUTE)
    usage_settle_all(now=T0 + 40 * MINUTE)

    closed = meter_close(meter=meter, now=T0 + HOUR)  # closed by the renter while the node is silent

    assert closed.charged == 500_000
    # A resume after the close changes nothing: the charge ended at the pause.
    assert meter_resume(meter_id=meter.id, at=T0 + 2 * HOUR).excluded_seconds == 0
    assert meter_accrued(closed, now=T0 + 2 * HOUR) == closed.charged
    assert user_balances(user=renter).available == 5 * USD - 500_000
    assert_ledger_consistent()


def test_a_paused_meter_is_not_warned_or_closed_for_a_hold_that_cannot_cover_the_next_hour(
    renter, provider, billing_hooks
):
    fund(renter, 1 * USD)  # the hold takes all of it: nothing to extend it with
    meter = open_meter(renter, provider, price=1 * USD, hold=1 * USD)
    meter_pause(meter_id=meter.id, at=T0 + 30 * MINUTE)

    result = usage_settle_all(now=T0 + HOUR)
    usage_settle_all(now=T0 + 2 * HOUR)

    meter.refresh_from_db()
    assert result.short == []
    assert billing_hooks.warned == [] and billing_hooks.closed == []
    assert meter.closed_at is None and meter.charged == 500_000
    assert_ledger_consistent()


def test_a_pause_does_not_count_towards_a_reservations_month(renter, provider, settings):
    settings.MONTHLY_RESERVATION_DISCOUNT = Decimal("0.15")
    fund(renter, 2_000 * USD)
    month = timedelta(seconds=RESERVATION_SECONDS)
    start = T0 - month - timedelta(days=5)
    meter = reservation_open(
        renter=renter, payee=provider, price_per_hour=1 * USD, fee_rate=Decimal("0.05"),
        reference_type="lease", reference_id="R-paused", started_at=start,
    )  # fmt: skip
    total = meter.reservation_total
    meter_pause(meter_id=meter.id, at=start + timedelta(days=10))
    usage_settle_all(now=start + timedelta(days=11))
    meter.refresh_from_db()
    assert meter.charged == total * 10 * 86_400 // RESERVATION_SECONDS  # 10 days earned, not 11
    meter_resume(meter_id=meter.id, at=start + timedelta(days=12))  # two days of silence

    usage_settle_all(now=start + month + timedelta(days=1))
    meter.refresh_from_db()
    assert meter.closed_at is None  # the month runs two days longer
    assert meter.charged < total

    usage_settle_all(now=start + month + timedelta(days=3))
    meter.refresh_from_db()
    assert meter.closed_at == start + month + timedelta(days=2)
    assert meter.charged == total
    assert user_balances(user=renter).reserved == 0
    assert_ledger_consistent()


def test_settling_paused_meters_makes_no_query_per_meter(renter, provider):
    fund(renter, 40 * USD)
    meters = [open_meter(renter, provider, ref=f"L{n}") for n in range(30)]
    for meter in meters[::2]:
        meter_pause(meter_id=meter.id, at=T0 + 15 * MINUTE)
    usage_settle_all(now=T0 + 10 * MINUTE)  # every account exists from here on

    with CaptureQueriesContext(connection) as few:
        usage_settle_batch(meter_ids=[m.id for m in meters[:4]], now=T0 + 20 * MINUTE)
    with CaptureQueriesContext(connection) as many:
        usage_settle_batch(meter_ids=[m.id for m in meters[4:]], now=T0 + 20 * MINUTE)

    assert len(many.captured_queries) == len(few.captured_queries)
    charged = sorted({m.charged for m in UsageMeter.objects.filter(id__in=[m.id for m in meters])})
    assert charged == [1 * USD // 4, 1 * USD // 3]  # paused at 15 min, running to 20 min
    assert_ledger_consistent()


def test_a_settlement_that_ran_after_the_last_heartbeat_is_given_back_at_the_pause(renter, provider):
    """The node's last heartbeat was at 1 h; a settlement at 1 h 50 s charged up to then before the
    node was known to be silent; the pause at the last heartbeat gives those 50 s back, once."""
    fund(renter, 5 * USD)
    meter = open_meter(renter, provider, price=180_000, hold=1 * USD)  # $0.18/h: 50 s = $0.0025
    usage_settle_all(now=T0 + HOUR + 50 * timedelta(seconds=1))
    meter.refresh_from_db()
    assert meter.charged == 182_500
    before = user_balances(user=renter).available

    meter_pause(meter_id=meter.id, at=T0 + HOUR)
    meter_pause(meter_id=meter.id, at=T0 + HOUR)  # again: nothing more
    meter.refresh_from_db()
    assert meter.charged == 180_000  # exactly one hour
    assert user_balances(user=renter).available == before + 2_500
    meter_close(meter=meter, now=T0 + 2 * HOUR)  # the failover closes it later: charged to the pause
    meter.refresh_from_db()
    assert meter.charged == 180_000
    assert_ledger_consistent()
