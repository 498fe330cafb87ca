from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import LedgerTransaction, TransactionKind
from billing.selectors import user_balances
from billing.usage import RESERVATION_SECONDS, meter_close, reservation_open, reservation_price, usage_settle_all
from tests.billing.conftest import assert_ledger_consistent, fund

pytestmark = pytest.mark.calendar

MONTH = timedelta(seconds=RESERVATION_SECONDS)


def test_reservation_price_is_a_discounted_month(settings):
    settings.MONTHLY_RESERVATION_DISCOUNT = Decimal("0.15")
    assert reservation_price(2_000_000) == 1_241_000_000  # $2/h x 730 h x 0.85


@pytest.mark.django_db
def test_month_is_charged_up_front_earned_evenly_and_refunded_pro_rata(renter, provider, settings):
    settings.MONTHLY_RESERVATION_DISCOUNT = Decimal("0.15")
    fund(renter, 2_000_000_000)
    start = timezone.now() - timedelta(days=10)
    meter = reservation_open(
        renter=renter, payee=provider, price_per_hour=2_000_000, fee_rate=Decimal("0.05"),
        reference_type="lease", reference_id="R1", started_at=start,
    )  # fmt: skip
    total = 1_241_000_000
    assert user_balances(user=renter).available == 2_000_000_000 - total
    place = LedgerTransaction.objects.get(kind=TransactionKind.HOLD_PLACE)
    assert "charged up front" in place.memo

    usage_settle_all(now=start + timedelta(days=10))
    earned = total * 10 * 86_400 // RESERVATION_SECONDS
    assert user_balances(user=provider).earnings_pending == earned - round(earned * Decimal("0.05"))
    assert user_balances(user=renter).reserved == total - earned

    meter_close(meter=meter, now=start + timedelta(days=10))
    balances = user_balances(user=renter)
    assert balances.reserved == 0
    assert balances.available == 2_000_000_000 - earned  # the unused 20.4 days came back
    assert_ledger_consistent()


@pytest.mark.django_db
def test_reservation_expires_after_the_month(renter, provider, billing_hooks, django_capture_on_commit_callbacks):
    fund(renter, 2_000_000_000)
    start = timezone.now() - MONTH - timedelta(hours=5)
    meter = reservation_open(
        renter=renter, payee=provider, price_per_hour=1_000_000, fee_rate=Decimal("0.05"),
        reference_type="lease", reference_id="R2", started_at=start,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        usage_settle_all(now=timezone.now())
    meter.refresh_from_db()
    assert meter.closed_at == start + MONTH
    assert meter.charged == meter.reservation_total  # the whole month, not a micro-dollar more
    assert user_balances(user=renter).reserved == 0
    assert ("lease", "R2", "expired") in billing_hooks.closed
    assert_ledger_consistent()
