"""Holds (reserve, capture, release) and per-second usage meters settled from them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.models import AccountKind, Hold, LedgerAccount, LedgerEntry, LedgerTransaction, TransactionKind, UsageMeter
from billing.selectors import user_balances
from billing.services import (
    fee_for,
    hold_capture,
    hold_place,
    hold_release,
    hold_swap,
    topup_reverse,
    transaction_reverse,
)
from billing.usage import (
    fee_rate_for,
    meter_accrued,
    meter_close,
    meter_open,
    meter_open_swapping,
    meter_top_up_or_warn,
    usage_settle_all,
    usage_settle_batch,
)
from core.errors import ApplicationError
from tests.billing.conftest import T0, USD, assert_ledger_consistent, fund
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.calendar]

FIZZ = fee_rate_for("fizz")
PROVIDER_MODE = fee_rate_for("provider")
HOUR = timedelta(hours=1)


def balances(user):
    return user_balances(user=user)


def platform_fees() -> int:
    account = LedgerAccount.objects.filter(kind=AccountKind.PLATFORM_FEES, user=None).first()
    return account.balance if account else 0


def ledger_rows() -> int:
    return LedgerTransaction.objects.count() + LedgerEntry.objects.count()


def open_meter(renter, payee, *, price=1 * USD, hold=1 * USD, ref="L1", started_at=T0, fee_rate=FIZZ):
    return meter_open(
        renter=renter,
        payee=payee,
        price_per_hour=price,
        fee_rate=fee_rate,
        hold_amount=hold,
        reference_type="lease",
        reference_id=ref,
        started_at=started_at,
    )


def fresh(obj):
    obj.refresh_from_db()
    return obj


# --- fees ----------------------------------------------------------------------------------------
def test_platform_fee_is_7_percent_in_fizz_mode_and_5_percent_in_provider_mode():
    assert FIZZ == Decimal("0.07")
    assert PROVIDER_MODE == Decimal("0.05")


def test_fee_rounds_half_up_to_a_whole_micro_dollar():
    assert fee_for(50, Decimal("0.07")) == 4  # 3.5
    assert fee_for(49, Decimal("0.07")) == 3  # 3.43


# --- hold_place ----------------------------------------------------------------------------------
class TestHoldPlace:
    def test_hold_moves_credits_from_available_to_reserved(self, renter):
        fund(renter, 10 * USD)

        hold = hold_place(user=renter, amount=4 * USD, reference_type="lease", reference_id=7)

        assert (hold.status, hold.amount, hold.remaining, hold.reference_id) == ("active", 4 * USD, 4 * USD, "7")
        assert balances(renter).available == 6 * USD
        assert balances(renter).reserved == 4 * USD
        assert_ledger_consistent()

    def test_hold_beyond_available_is_refused_and_leaves_no_trace(self, renter):
        fund(renter, 3 * USD)
        rows = ledger_rows()

        with pytest.raises(ApplicationError) as caught:
            hold_place(user=renter, amount=3 * USD + 1, reference_type="lease", reference_id="1")

        assert caught.value.message == "Insufficient funds: the balance cannot cover this."
        assert caught.value.status == 409
        assert not Hold.objects.exists()
        assert ledger_rows() == rows
        assert balances(renter).available == 3 * USD

    def test_same_reference_twice_places_one_hold(self, renter):
        fund(renter, 10 * USD)
        first = hold_place(user=renter, amount=4 * USD, reference_type="lease", reference_id="1")
        second = hold_place(user=renter, amount=4 * USD, reference_type="lease", reference_id="1")

        assert second.pk == first.pk
        assert balances(renter).reserved == 4 * USD

    @pytest.mark.parametrize("amount", [0, -1])
    def test_non_positive_hold_is_refused(self, renter, amount):
        fund(renter, 10 * USD)
        with pytest.raises(ApplicationError, match="A hold must be a positive amount."):
            hold_place(user=renter, amount=amount, reference_type="lease", reference_id="1")

    def test_debt_blocks_new_holds_until_a_top_up_repays_it(self, renter):
        topup = fund(renter, 10 * USD)
        hold_place(user=renter, amount=10 * USD, reference_type="lease", reference_id="1")
        topup_reverse(topup=topup, amount=2 * USD, idempotency_key="refund:1")
        with pytest.raises(ApplicationError, match=r"owes \$2\.00"):
            hold_place(user=renter, amount=1, reference_type="lease", reference_id="2")

        fund(renter, 3 * USD)
        hold = hold_place(user=renter, amount=1 * USD, reference_type="lease", reference_id="2")
        assert hold.amount == 1 * USD
        assert balances(renter).available == 0
        assert balances(renter).debt == 0


# --- hold_capture --------------------------------------------------------------------------------
class TestHoldCapture:
    @pytest.mark.parametrize(("mode", "fee"), [("fizz", 70_000), ("provider", 50_000)])
    def test_capture_pays_the_provider_less_the_platform_fee(self, renter, provider, mode, fee):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=3 * USD, reference_type="lease", reference_id="1")

        txn = hold_capture(
            hold=hold, amount=1 * USD, payee=provider, fee_rate=fee_rate_for(mode), idempotency_key="cap:1"
        )

        assert txn.kind == TransactionKind.HOLD_CAPTURE
        assert (txn.reference_type, txn.reference_id) == ("lease", "1")
        assert balances(renter).reserved == 2 * USD
        assert balances(provider).earnings_pending == 1 * USD - fee
        assert platform_fees() == fee
        assert fresh(hold).captured == 1 * USD
        assert_ledger_consistent()

    def test_same_capture_key_twice_charges_once(self, renter, provider):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=3 * USD, reference_type="lease", reference_id="1")
        first = hold_capture(hold=hold, amount=1 * USD, payee=provider, fee_rate=FIZZ, idempotency_key="cap:1")
        second = hold_capture(hold=hold, amount=1 * USD, payee=provider, fee_rate=FIZZ, idempotency_key="cap:1")

        assert second.pk == first.pk
        assert fresh(hold).captured == 1 * USD
        assert balances(renter).reserved == 2 * USD

    def test_capture_beyond_what_remains_is_refused(self, renter, provider):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=3 * USD, reference_type="lease", reference_id="1")
        hold_capture(hold=hold, amount=2 * USD, payee=provider, fee_rate=FIZZ, idempotency_key="cap:1")
        rows = ledger_rows()

        with pytest.raises(ApplicationError) as caught:
            hold_capture(hold=hold, amount=1 * USD + 1, payee=provider, fee_rate=FIZZ, idempotency_key="cap:2")

        assert caught.value.message == "The hold does not cover this charge."
        assert caught.value.extra == {"hold": hold.id, "remaining": 1 * USD}
        assert ledger_rows() == rows
        assert fresh(hold).captured == 2 * USD

    def test_capture_from_a_closed_hold_is_refused(self, renter, provider):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=3 * USD, reference_type="lease", reference_id="1")
        hold_release(hold=hold)
        with pytest.raises(ApplicationError, match="This hold is closed."):
            hold_capture(hold=hold, amount=1, payee=provider, fee_rate=FIZZ, idempotency_key="cap:1")
        assert balances(provider).earnings_pending == 0

    def test_capturing_nothing_writes_nothing(self, renter, provider):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=3 * USD, reference_type="lease", reference_id="1")
        rows = ledger_rows()
        assert hold_capture(hold=hold, amount=0, payee=provider, fee_rate=FIZZ, idempotency_key="cap:0") is None
        assert ledger_rows() == rows


# --- hold_release --------------------------------------------------------------------------------
class TestHoldRelease:
    def test_release_returns_what_is_left_and_closes_the_hold(self, renter, provider):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=3 * USD, reference_type="lease", reference_id="1")
        hold_capture(hold=hold, amount=1 * USD, payee=provider, fee_rate=FIZZ, idempotency_key="cap:1")

        txn = hold_release(hold=hold)

        assert txn.kind == TransactionKind.HOLD_RELEASE
        hold = fresh(hold)
        assert (hold.status, hold.captured, hold.released, hold.remaining) == ("closed", 1 * USD, 2 * USD, 0)
        assert hold.closed_at is not None
        assert balances(renter).available == 4 * USD
        assert balances(renter).reserved == 0
        assert_ledger_consistent()

    def test_release_twice_is_a_no_op(self, renter):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=3 * USD, reference_type="lease", reference_id="1")
        hold_release(hold=hold)
        rows = ledger_rows()

        assert hold_release(hold=hold) is None
        assert ledger_rows() == rows
        assert balances(renter).available == 5 * USD

    def test_release_of_a_fully_captured_hold_writes_no_transaction(self, renter, provider):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=1 * USD, reference_type="lease", reference_id="1")
        hold_capture(hold=hold, amount=1 * USD, payee=provider, fee_rate=FIZZ, idempotency_key="cap:1")

        assert hold_release(hold=hold) is None
        assert fresh(hold).status == Hold.Status.CLOSED


# --- hold_swap -----------------------------------------------------------------------------------
class TestHoldSwap:
    def test_swap_for_less_returns_the_difference_in_one_posting(self, renter):
        fund(renter, 10 * USD)
        old = hold_place(user=renter, amount=6 * USD, reference_type="deployment", reference_id="1:1")
        rows = LedgerTransaction.objects.count()

        new = hold_swap(hold=old, amount=2 * USD, reference_type="lease", reference_id="9")

        assert (new.status, new.amount, new.remaining, new.reference_id) == ("active", 2 * USD, 2 * USD, "9")
        old = fresh(old)
        assert (old.status, old.released, old.remaining) == ("closed", 6 * USD, 0)
        assert balances(renter).available == 8 * USD and balances(renter).reserved == 2 * USD
        assert LedgerTransaction.objects.count() == rows + 1
        swap = LedgerTransaction.objects.get(kind=TransactionKind.HOLD_SWAP)
        assert (swap.reference_type, swap.reference_id) == ("hold", str(old.id))
        assert sorted(swap.entries.values_list("amount", flat=True)) == [-4 * USD, 4 * USD]
        assert_ledger_consistent()

    def test_swap_for_the_same_amount_writes_no_ledger_transaction(self, renter):
        fund(renter, 10 * USD)
        old = hold_place(user=renter, amount=3 * USD, reference_type="deployment", reference_id="1:1")
        rows = ledger_rows()

        new = hold_swap(hold=old, amount=3 * USD, reference_type="lease", reference_id="9")

        assert ledger_rows() == rows
        assert fresh(old).status == Hold.Status.CLOSED and new.remaining == 3 * USD
        assert balances(renter).reserved == 3 * USD and balances(renter).available == 7 * USD
        assert_ledger_consistent()

    def test_swap_for_more_takes_the_rest_from_available_credits(self, renter):
        fund(renter, 10 * USD)
        old = hold_place(user=renter, amount=3 * USD, reference_type="deployment", reference_id="1:1")

        hold_swap(hold=old, amount=5 * USD, reference_type="lease", reference_id="9")

        assert balances(renter).reserved == 5 * USD and balances(renter).available == 5 * USD
        assert_ledger_consistent()

    def test_swap_for_more_than_the_user_has_is_refused_and_leaves_no_trace(self, renter):
        fund(renter, 4 * USD)
        old = hold_place(user=renter, amount=3 * USD, reference_type="deployment", reference_id="1:1")
        rows = ledger_rows()

        with pytest.raises(ApplicationError, match="Insufficient funds"):
            hold_swap(hold=old, amount=4 * USD + 1, reference_type="lease", reference_id="9")

        assert ledger_rows() == rows
        assert fresh(old).status == Hold.Status.ACTIVE and not Hold.objects.filter(reference_id="9").exists()

    def test_debt_blocks_a_swap_for_more_but_not_one_for_less(self, renter):
        topup = fund(renter, 10 * USD)
        old = hold_place(user=renter, amount=10 * USD, reference_type="deployment", reference_id="1:1")
        topup_reverse(topup=topup, amount=2 * USD, idempotency_key="refund:1")

        with pytest.raises(ApplicationError, match=r"owes \$2\.00"):
            hold_swap(hold=old, amount=11 * USD, reference_type="lease", reference_id="9")
        hold_swap(hold=old, amount=4 * USD, reference_type="lease", reference_id="9")  # already held

        assert balances(renter).reserved == 4 * USD and balances(renter).available == 6 * USD
        assert balances(renter).debt == 2 * USD
        assert_ledger_consistent()

    def test_swapping_a_closed_hold_is_refused(self, renter):
        fund(renter, 10 * USD)
        old = hold_place(user=renter, amount=3 * USD, reference_type="deployment", reference_id="1:1")
        hold_swap(hold=old, amount=2 * USD, reference_type="lease", reference_id="9")
        rows = ledger_rows()

        with pytest.raises(ApplicationError, match="This hold is closed."):
            hold_swap(hold=old, amount=2 * USD, reference_type="lease", reference_id="10")

        assert ledger_rows() == rows
        assert balances(renter).reserved == 2 * USD

    def test_a_swap_is_not_reversible_like_a_charge(self, renter, provider):
        fund(renter, 10 * USD)
        old = hold_place(user=renter, amount=3 * USD, reference_type="deployment", reference_id="1:1")
        hold_swap(hold=old, amount=2 * USD, reference_type="lease", reference_id="9")
        swap = LedgerTransaction.objects.get(kind=TransactionKind.HOLD_SWAP)

        with pytest.raises(ApplicationError, match="capturing or releasing"):
            transaction_reverse(txn=swap, memo="oops", created_by=provider)

    def test_meter_opened_by_swapping_holds_at_the_locked_price(self, renter, provider):
        fund(renter, 10 * USD)
        old = hold_place(user=renter, amount=6 * USD, reference_type="deployment", reference_id="1:1")

        meter = meter_open_swapping(
            hold=old, payee_id=provider.id, price_per_hour=1 * USD, fee_rate=FIZZ, hold_amount=2 * USD,
            reference_type="lease", reference_id="9", started_at=T0,
        )  # fmt: skip

        assert (meter.renter_id, meter.payee_id, meter.price_per_hour) == (renter.id, provider.id, 1 * USD)
        assert meter.hold.amount == 2 * USD and fresh(old).status == Hold.Status.CLOSED
        usage_settle_all(now=T0 + HOUR)
        assert fresh(meter).charged == 1 * USD
        assert balances(renter).reserved == 1 * USD and balances(renter).available == 8 * USD
        assert_ledger_consistent()


# --- meters: accrual -----------------------------------------------------------------------------
class TestMeterAccrual:
    def test_one_dollar_an_hour_for_90_seconds_is_25000_micros(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider)
        assert meter_accrued(meter, now=T0 + timedelta(seconds=90)) == 25_000

    def test_accrual_rounds_down_once_from_the_start(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, price=1_000_001)
        assert meter_accrued(meter, now=T0 + timedelta(seconds=1)) == 277  # 277.7781
        assert meter_accrued(meter, now=T0 + timedelta(hours=1)) == 1_000_001

    def test_nothing_accrues_before_the_start_and_nothing_after_the_close(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider)
        assert meter_accrued(meter, now=T0 - timedelta(minutes=5)) == 0
        meter.closed_at = T0 + timedelta(minutes=30)
        assert meter_accrued(meter, now=T0 + timedelta(hours=5)) == 500_000

    def test_excluded_seconds_are_not_charged(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=2 * USD)
        UsageMeter.objects.filter(id=meter.id).update(excluded_seconds=600)  # 10 min of downtime

        result = usage_settle_all(now=T0 + HOUR)

        assert result.charged == 1 * USD * 50 // 60
        assert fresh(meter).charged == 833_333
        assert balances(renter).reserved == 2 * USD - 833_333


# --- meters: open --------------------------------------------------------------------------------
class TestMeterOpen:
    def test_open_places_the_hold_and_locks_the_price(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, price=1_750_000, hold=2 * USD)

        assert (meter.price_per_hour, meter.fee_rate, meter.started_at) == (1_750_000, FIZZ, T0)
        assert meter.hold.amount == 2 * USD
        assert (meter.hold.reference_type, meter.hold.reference_id) == ("lease", "L1")
        assert balances(renter).reserved == 2 * USD

    def test_open_twice_for_one_rental_returns_the_first_meter(self, renter, provider):
        fund(renter, 5 * USD)
        first = open_meter(renter, provider)
        second = open_meter(renter, provider)
        assert second.pk == first.pk
        assert balances(renter).reserved == 1 * USD

    def test_open_without_the_credits_is_refused_and_leaves_nothing(self, renter, provider):
        fund(renter, 1 * USD)
        with pytest.raises(ApplicationError, match="Insufficient funds"):
            open_meter(renter, provider, hold=2 * USD)
        assert not UsageMeter.objects.exists()
        assert not Hold.objects.exists()

    def test_negative_price_is_refused(self, renter, provider):
        fund(renter, 5 * USD)
        with pytest.raises(ApplicationError, match="cannot be negative"):
            open_meter(renter, provider, price=-1)
        assert not Hold.objects.exists()


# --- meters: hourly settlement -------------------------------------------------------------------
class TestSettlement:
    def test_settlement_charges_exactly_what_accrued_per_second(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=2 * USD)

        result = usage_settle_all(now=T0 + timedelta(seconds=90))

        assert (result.meters, result.charged, result.transactions, result.entries) == (1, 25_000, 1, 3)
        meter = fresh(meter)
        assert meter.charged == 25_000
        assert meter.settled_at == T0 + timedelta(seconds=90)
        assert balances(renter).reserved == 2 * USD - 25_000
        assert balances(provider).earnings_pending == 25_000 - 1_750
        assert platform_fees() == 1_750
        assert_ledger_consistent()

    def test_many_settlements_charge_and_split_exactly_like_one(self, provider):
        price = 1_234_567
        often, once = make_user(), make_user()
        fund(often, 10 * USD)
        fund(once, 10 * USD)
        other_provider = make_user(is_provider=True)
        meter_often = open_meter(often, provider, price=price, hold=3 * USD, ref="often")
        meter_once = open_meter(once, other_provider, price=price, hold=3 * USD, ref="once")

        end = T0 + timedelta(hours=2, seconds=13)
        moment = T0
        settlements = 0
        while moment < end:
            moment = min(moment + timedelta(seconds=67), end)
            usage_settle_batch(meter_ids=[meter_often.id], now=moment)
            settlements += 1
        usage_settle_batch(meter_ids=[meter_once.id], now=end)

        expected = price * (2 * 3600 + 13) // 3600
        assert settlements > 100
        assert fresh(meter_often).charged == fresh(meter_once).charged == expected
        assert balances(often).reserved == balances(once).reserved == 3 * USD - expected
        # The fee is rounded once over the whole charge, not once per settlement.
        assert balances(provider).earnings_pending == balances(other_provider).earnings_pending
        assert balances(provider).earnings_pending == expected - fee_for(expected, FIZZ)
        assert_ledger_consistent()

    def test_settling_twice_at_the_same_moment_charges_nothing_more(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=2 * USD)
        usage_settle_all(now=T0 + HOUR)
        rows = ledger_rows()

        again = usage_settle_all(now=T0 + HOUR)

        assert (again.charged, again.transactions, again.rows_written) == (0, 0, 0)
        assert ledger_rows() == rows
        assert fresh(meter).charged == 1 * USD
        assert balances(provider).earnings_pending == 930_000

    def test_result_counts_every_row_written(self, provider):
        renters = [make_user() for _ in range(3)]
        for number, renter in enumerate(renters):
            fund(renter, 5 * USD)
            open_meter(renter, provider, hold=2 * USD, ref=f"L{number}")
        rows = ledger_rows()

        result = usage_settle_all(now=T0 + HOUR, batch_size=2)

        assert (result.meters, result.transactions, result.entries, result.charged) == (3, 3, 9, 3 * USD)
        assert ledger_rows() - rows == result.transactions + result.entries
        # 3 transactions + 9 entries + 3 meters + 3 holds + balances of (3 reserved, 1 pending, fees) in
        # each of the two batches (the provider's and the fee account are updated once per batch).
        assert result.rows_written == 3 + 9 + 3 + 3 + (2 + 1 + 1) + (1 + 1 + 1)
        assert_ledger_consistent()

    def test_closed_meters_are_not_settled(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=2 * USD)
        meter_close(meter=meter, now=T0 + timedelta(minutes=30))

        result = usage_settle_all(now=T0 + 2 * HOUR)

        assert result.meters == 0
        assert fresh(meter).charged == 500_000

    def test_a_meter_is_never_charged_beyond_its_hold(self, renter, provider, billing_hooks):
        fund(renter, 1 * USD)
        meter = open_meter(renter, provider, hold=1 * USD)

        usage_settle_all(now=T0 + 3 * HOUR)

        assert fresh(meter).charged == 1 * USD
        assert balances(renter).reserved == 0
        assert balances(renter).available == 0
        assert_ledger_consistent()


# --- meters: the next hour -----------------------------------------------------------------------
class TestNextHour:
    def test_hold_is_extended_from_available_credits_to_cover_the_next_hour(self, renter, provider):
        fund(renter, 3 * USD)
        meter = open_meter(renter, provider, hold=1 * USD)

        result = usage_settle_all(now=T0 + timedelta(minutes=30))

        assert result.short == [meter.id]
        hold = fresh(meter.hold)
        assert (hold.amount, hold.captured, hold.remaining) == (1_500_000, 500_000, 1 * USD)
        assert balances(renter).available == 1_500_000
        assert balances(renter).reserved == 1 * USD
        assert fresh(meter).low_balance_warned_at is None
        assert_ledger_consistent()

    def test_renter_who_cannot_cover_the_next_hour_is_warned_once_then_closed(
        self, renter, provider, billing_hooks, django_capture_on_commit_callbacks
    ):
        fund(renter, 1 * USD)
        meter = open_meter(renter, provider, hold=1 * USD)

        with django_capture_on_commit_callbacks() as callbacks:
            usage_settle_all(now=T0 + HOUR)
        assert billing_hooks.warned == []  # only once the settlement commits
        for callback in callbacks:
            callback()
        assert [(user, m.id) for user, m in billing_hooks.warned] == [(renter, meter.id)]
        assert fresh(meter).low_balance_warned_at == T0 + HOUR

        # Runs less than 50 minutes after the warning neither warn again nor close.
        for minutes in (10, 49):
            with django_capture_on_commit_callbacks(execute=True) as callbacks:
                usage_settle_all(now=T0 + HOUR + timedelta(minutes=minutes))
            assert callbacks == []
            assert fresh(meter).closed_at is None
        assert len(billing_hooks.warned) == 1

        with django_capture_on_commit_callbacks(execute=True):
            usage_settle_all(now=T0 + HOUR + timedelta(minutes=50))

        assert billing_hooks.closed == [("lease", "L1", "insufficient_funds")]
        meter = fresh(meter)
        assert meter.closed_at == T0 + HOUR + timedelta(minutes=50)
        assert meter.hold.status == Hold.Status.CLOSED
        assert meter.charged == 1 * USD
        assert balances(provider).earnings_pending == 930_000
        assert balances(renter).reserved == 0
        assert_ledger_consistent()

    def test_top_up_after_the_warning_extends_the_hold_and_clears_the_warning(
        self, renter, provider, billing_hooks, django_capture_on_commit_callbacks
    ):
        fund(renter, 1 * USD)
        meter = open_meter(renter, provider, hold=1 * USD)
        with django_capture_on_commit_callbacks(execute=True):
            usage_settle_all(now=T0 + HOUR)
        fund(renter, 5 * USD)

        with django_capture_on_commit_callbacks(execute=True):
            usage_settle_all(now=T0 + HOUR + timedelta(minutes=55))

        meter = fresh(meter)
        assert meter.closed_at is None
        assert meter.low_balance_warned_at is None
        # The 55 minutes used while the hold was empty are charged now, and the next hour is held.
        assert meter.charged == 1 * USD + 916_666
        assert meter.hold.remaining == 1 * USD
        assert balances(renter).available == 5 * USD - 916_666 - 1 * USD
        assert billing_hooks.closed == []
        assert_ledger_consistent()

    def test_a_late_run_charges_all_usage_once_the_hold_is_extended(self, renter, provider, billing_hooks):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=1 * USD)

        first = usage_settle_all(now=T0 + 2 * HOUR)  # the run came an hour late
        again = usage_settle_all(now=T0 + 2 * HOUR)

        # One hour from the hold as it was, and the hour it could not cover once the hold was extended.
        assert (first.charged, first.transactions) == (2 * USD, 2)
        meter = fresh(meter)
        assert meter.charged == 2 * USD
        assert meter.hold.remaining == 1 * USD  # the next hour
        assert (again.charged, again.transactions) == (0, 0)
        assert balances(renter).available == 2 * USD
        assert balances(provider).earnings_pending == 2 * USD - fee_for(2 * USD, FIZZ)
        assert_ledger_consistent()

    def test_top_up_or_warn_reports_what_it_did(self, renter, provider, billing_hooks):
        fund(renter, 1_500_000)
        meter = open_meter(renter, provider, hold=1 * USD)
        assert meter_top_up_or_warn(meter_id=meter.id, now=T0) == "extended"  # the hold covers the hour
        at = T0 + HOUR
        usage_settle_batch(meter_ids=[meter.id], now=at)
        assert meter_top_up_or_warn(meter_id=meter.id, now=at) == "warned"  # 0.5 available, 1 needed
        assert meter_top_up_or_warn(meter_id=meter.id, now=at + timedelta(minutes=20)) == "warned"
        assert meter_top_up_or_warn(meter_id=meter.id, now=at + timedelta(minutes=50)) == "closed"
        assert meter_top_up_or_warn(meter_id=meter.id, now=at + timedelta(minutes=60)) == "closed"
        assert balances(renter).available == 500_000
        assert fresh(meter).charged == 1 * USD

    def test_a_meter_whose_hold_was_released_is_not_refilled_and_still_closes(self, renter, provider, billing_hooks):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=1 * USD)
        hold_release(hold=meter.hold)  # e.g. an operator released it by hand

        usage_settle_all(now=T0 + timedelta(minutes=30))

        assert balances(renter).reserved == 0  # nothing reserved under a closed hold
        closed = meter_close(meter=meter, now=T0 + timedelta(minutes=40))
        assert closed.closed_at == T0 + timedelta(minutes=40)
        assert balances(renter).available == 5 * USD
        assert_ledger_consistent()


# --- meters: close -------------------------------------------------------------------------------
class TestMeterClose:
    def test_close_settles_up_to_now_and_releases_the_rest(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=2 * USD)
        usage_settle_all(now=T0 + timedelta(minutes=20))

        closed = meter_close(meter=meter, now=T0 + timedelta(minutes=45))

        assert closed.closed_at == T0 + timedelta(minutes=45)
        assert closed.charged == 750_000
        assert closed.settled_at == T0 + timedelta(minutes=45)
        assert closed.hold.status == Hold.Status.CLOSED
        assert closed.hold.released == 2 * USD - 750_000
        assert balances(renter).available == 5 * USD - 750_000
        assert balances(renter).reserved == 0
        assert balances(provider).earnings_pending == 750_000 - fee_for(750_000, FIZZ)
        assert platform_fees() == fee_for(750_000, FIZZ)
        assert_ledger_consistent()

    def test_close_twice_changes_nothing(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=2 * USD)
        meter_close(meter=meter, now=T0 + timedelta(minutes=45))
        rows = ledger_rows()

        again = meter_close(meter=meter, now=T0 + 3 * HOUR)

        assert again.closed_at == T0 + timedelta(minutes=45)
        assert again.charged == 750_000
        assert ledger_rows() == rows

    def test_close_does_not_charge_excluded_downtime(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, hold=2 * USD)
        UsageMeter.objects.filter(id=meter.id).update(excluded_seconds=15 * 60)

        closed = meter_close(meter=meter, now=T0 + HOUR)

        assert closed.charged == 750_000

    def test_close_after_frequent_settlements_splits_the_fee_like_one_charge(self, renter, provider):
        fund(renter, 5 * USD)
        meter = open_meter(renter, provider, price=1_000_000, hold=2 * USD)
        for second in range(13, 600, 13):
            usage_settle_batch(meter_ids=[meter.id], now=T0 + timedelta(seconds=second))

        closed = meter_close(meter=meter, now=T0 + timedelta(seconds=601))

        charged = 1_000_000 * 601 // 3600
        assert closed.charged == charged
        assert platform_fees() == fee_for(charged, FIZZ)
        assert balances(provider).earnings_pending == charged - fee_for(charged, FIZZ)
