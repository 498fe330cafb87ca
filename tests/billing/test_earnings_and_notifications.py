from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import WalletLink
from billing.earnings import earnings_settle_due
from billing.models import LedgerTransaction, TransactionKind
from billing.payouts import payout_request_create
from billing.selectors import user_balances
from billing.services import transaction_reverse
from billing.usage import meter_close, meter_open, meter_top_up_or_warn, usage_settle_all
from chain.registry import ChainAddresses, registry_sync
from core.errors import ApplicationError
from tests.billing.conftest import assert_ledger_consistent, fund

pytestmark = pytest.mark.calendar

HOUR = timedelta(hours=1)


def _charge(renter, provider, *, hours: int, at):
    meter = meter_open(
        renter=renter, payee=provider, price_per_hour=1_000_000, fee_rate=Decimal("0.05"),
        hold_amount=hours * 1_000_000, reference_type="lease", reference_id=f"L-{at.timestamp()}",
        started_at=at - hours * HOUR,
    )  # fmt: skip
    usage_settle_all(now=at)
    meter_close(meter=meter, now=at)
    return meter


@pytest.mark.django_db
def test_earnings_settle_only_after_the_holding_window(renter, provider, settings):
    settings.EARNINGS_HOLD_HOURS = 72
    fund(renter, 10_000_000)
    _charge(renter, provider, hours=2, at=timezone.now() - 100 * HOUR)
    # Ledger rows are stamped when written: make the first charge 100 hours old.
    LedgerTransaction.objects.filter(kind=TransactionKind.HOLD_CAPTURE).update(created_at=timezone.now() - 100 * HOUR)
    _charge(renter, provider, hours=3, at=timezone.now())
    assert user_balances(user=provider).earnings_pending == 4_750_000  # 5 h at $1, less 5%

    earnings_settle_due()
    balances = user_balances(user=provider)
    assert (balances.earnings_pending, balances.earnings_settled) == (2_850_000, 1_900_000)  # only the old 2 h
    earnings_settle_due()  # a re-run moves nothing more
    assert user_balances(user=provider).earnings_settled == 1_900_000

    earnings_settle_due(now=timezone.now() + 73 * HOUR)
    balances = user_balances(user=provider)
    assert (balances.earnings_pending, balances.earnings_settled) == (0, 4_750_000)
    assert LedgerTransaction.objects.filter(kind=TransactionKind.SETTLEMENT).count() == 2
    assert_ledger_consistent()


@pytest.mark.django_db
def test_reversed_charges_are_not_settled(renter, provider, settings):
    settings.EARNINGS_HOLD_HOURS = 0
    fund(renter, 10_000_000)
    _charge(renter, provider, hours=2, at=timezone.now() - HOUR)
    charge = LedgerTransaction.objects.get(kind=TransactionKind.HOLD_CAPTURE)
    transaction_reverse(txn=charge, memo="customer complaint")
    earnings_settle_due()
    balances = user_balances(user=provider)
    assert balances.earnings_settled == 0 and balances.earnings_pending == 0
    assert_ledger_consistent()


@pytest.mark.django_db
def test_settled_earnings_can_be_requested_as_a_payout(renter, provider, settings):
    settings.EARNINGS_HOLD_HOURS = 0
    fund(renter, 10_000_000)
    _charge(renter, provider, hours=2, at=timezone.now() - HOUR)
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver="0x" + "11" * 20)})
    WalletLink.objects.create(
        user=provider, address="0x" + "ab" * 20, purpose="payout", chain_id=8453, message="signed",
        signature="0x" + "00" * 65, linked_at=timezone.now(),
    )  # fmt: skip
    with pytest.raises(ApplicationError, match="at most \\$0.00"):
        payout_request_create(user=provider, amount=1_000_000, chain="base", token="native")
    earnings_settle_due()
    request = payout_request_create(user=provider, amount=1_900_000, chain="base", token="native")
    assert request.amount == 1_900_000


@pytest.mark.django_db
def test_low_balance_warning_emails_the_renter(renter, provider, django_capture_on_commit_callbacks):
    fund(renter, 1_000_000)
    start = timezone.now() - HOUR
    meter = meter_open(
        renter=renter, payee=provider, price_per_hour=1_000_000, fee_rate=Decimal("0.07"), hold_amount=1_000_000,
        reference_type="lease", reference_id="L-low", started_at=start,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        usage_settle_all(now=start + HOUR)
    [message] = mail.outbox
    assert message.to == [renter.email]
    assert "will not cover the next hour" in message.subject
    assert "L-low" in message.body
    with django_capture_on_commit_callbacks(execute=True):
        assert meter_top_up_or_warn(meter_id=meter.id, now=start + HOUR + timedelta(minutes=5)) == "warned"
    assert len(mail.outbox) == 1  # warned once, not on every run
