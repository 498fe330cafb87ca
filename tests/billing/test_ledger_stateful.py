"""Random sequences of everything that moves money, checked against a model after every step.

Hypothesis drives top-ups (some delivered twice, as duplicate webhooks), refunds and lost disputes
(some larger than what is left, which makes debt), holds, captures, releases, adjustments, usage
meters opened, settled at advancing (and sometimes stale) times, settled twice, closed, and holds
released from under a running meter. A plain-Python model predicts every balance and every
refusal; after each step the database must agree with the model and with the ledger's own rules.

Each example runs in a savepoint that is rolled back at its end, inside one Django test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import count

from django.db import transaction
from django.db.models import F, Min, Sum
from django.test import TestCase
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from billing import hooks
from billing.models import AccountKind, Hold, LedgerAccount, LedgerEntry, LedgerTransaction, TransactionKind, UsageMeter
from billing.selectors import cached_balances_mismatch, ledger_total, user_balances
from billing.services import (
    adjustment_post,
    fee_for,
    hold_capture,
    hold_place,
    hold_release,
    topup_credit,
    topup_reverse,
)
from billing.usage import fee_rate_for, meter_close, meter_open, usage_settle_all
from core.errors import ApplicationError
from tests.billing.conftest import T0, USD
from tests.factories import make_user

FEE_RATES = [fee_rate_for("fizz"), fee_rate_for("provider")]
PRICES = [0, 1, 999_999, 1 * USD, 3_600_000, 7_777_777, 12_345_678]
WARNING_GRACE = timedelta(minutes=50)


@dataclass
class UserModel:
    available: int = 0
    reserved: int = 0
    owed: int = 0
    topped_up: int = 0
    reversed: int = 0
    captured: int = 0
    adjusted: int = 0


@dataclass
class TopupModel:
    txn_id: int
    user: int
    amount: int
    key: str
    reversed: int = 0
    refund_keys: list[str] = field(default_factory=list)


@dataclass
class HoldModel:
    id: int
    user: int
    amount: int
    captured: int = 0
    released: int = 0
    active: bool = True
    capture_keys: list[tuple[str, int]] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.amount - self.captured - self.released


@dataclass
class MeterModel:
    id: int
    hold: HoldModel
    renter: int
    payee: int
    price: int
    fee_rate: Decimal
    started_at: datetime
    reference_id: str
    excluded_seconds: int = 0
    charged: int = 0
    closed_at: datetime | None = None
    warned_at: datetime | None = None

    def accrued(self, now: datetime) -> int:
        end = min(now, self.closed_at) if self.closed_at else now
        seconds = int((end - self.started_at).total_seconds()) - self.excluded_seconds
        return self.price * seconds // 3600 if seconds > 0 else 0


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self._saved_hooks = (hooks._insufficient_funds_handlers, hooks._low_balance_handlers)
        hooks._insufficient_funds_handlers, hooks._low_balance_handlers = [], []
        self.closed_by_hook: list[tuple[str, str, str]] = []
        self.warned_by_hook: list[int] = []
        hooks.register_insufficient_funds_handler(lambda *args: self.closed_by_hook.append(args))
        hooks.register_low_balance_handler(lambda user, meter: self.warned_by_hook.append(meter.id))

        self.renters = [make_user(), make_user()]
        self.payees = [make_user(is_provider=True), make_user(is_provider=True)]
        self.users = {user.id: UserModel() for user in self.renters}
        self.pending = {payee.id: 0 for payee in self.payees}
        self.fees = 0
        self.topups: list[TopupModel] = []
        self.holds: list[HoldModel] = []  # holds placed directly (not a meter's)
        self.meters: list[MeterModel] = []
        self.expected_closures: list[tuple[str, str, str]] = []
        self.expected_warnings: list[int] = []
        self.now = T0
        self.keys = count(1)

    def teardown(self) -> None:
        hooks._insufficient_funds_handlers, hooks._low_balance_handlers = self._saved_hooks
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers ---------------------------------------------------------------------------------
    def key(self, prefix: str) -> str:
        return f"{prefix}:{next(self.keys)}"

    def renter(self, index: int):
        return self.renters[index]

    def model(self, index: int) -> UserModel:
        return self.users[self.renters[index].id]

    def ledger_rows(self) -> tuple[int, int, int, int]:
        return (
            LedgerTransaction.objects.count(),
            LedgerEntry.objects.count(),
            Hold.objects.count(),
            UsageMeter.objects.filter(closed_at__isnull=True).count(),
        )

    def expect_refusal(self, call, match: str) -> None:
        before = self.ledger_rows()
        try:
            call()
        except ApplicationError as error:
            assert match in error.message, error.message
        else:
            raise AssertionError(f"expected a refusal ({match!r})")
        assert self.ledger_rows() == before

    def capture_in_model(self, hold: HoldModel, amount: int, payee_id: int, fee: int) -> None:
        hold.captured += amount
        user = self.users[hold.user]
        user.reserved -= amount
        user.captured += amount
        self.pending[payee_id] += amount - fee
        self.fees += fee

    def release_in_model(self, hold: HoldModel) -> None:
        user = self.users[hold.user]
        user.reserved -= hold.remaining
        user.available += hold.remaining
        hold.released += hold.remaining
        hold.active = False

    def place_in_model(self, user_index: int, amount: int) -> str | None:
        """None when the hold will be placed, else the refusal's message."""
        user = self.model(user_index)
        if user.owed:
            return "Your account owes"
        if amount > user.available:
            return "Insufficient funds"
        return None

    # --- money in and out ------------------------------------------------------------------------
    @initialize(first=st.integers(1 * USD, 40 * USD), second=st.integers(1 * USD, 40 * USD))
    def opening_top_ups(self, first: int, second: int) -> None:
        self.top_up(0, first)
        self.top_up(1, second)

    @rule(user=st.integers(0, 1), amount=st.one_of(st.integers(1, 5_000), st.integers(1, 20 * USD)))
    def top_up(self, user: int, amount: int) -> None:
        key = self.key("evt")
        txn = topup_credit(
            user=self.renter(user), amount=amount, reference_type="stripe_event", reference_id=key, idempotency_key=key
        )
        model = self.model(user)
        repay = min(model.owed, amount)
        model.owed -= repay
        model.available += amount - repay
        model.topped_up += amount
        self.topups.append(TopupModel(txn.id, user, amount, key))

    @precondition(lambda self: self.topups)
    @rule(data=st.data(), dispute=st.booleans())
    def refund_or_dispute(self, data: st.DataObject, dispute: bool) -> None:
        topup = data.draw(st.sampled_from(self.topups))
        requested = data.draw(st.integers(1, topup.amount + 1_000), label="requested")
        key = self.key("refund")
        call = lambda: topup_reverse(  # noqa: E731
            topup=LedgerTransaction.objects.get(id=topup.txn_id),
            amount=requested,
            kind=TransactionKind.DISPUTE if dispute else TransactionKind.REFUND,
            idempotency_key=key,
        )
        amount = min(requested, topup.amount - topup.reversed)
        if amount <= 0:
            self.expect_refusal(call, "already reversed in full")
            return
        call()
        model = self.model(topup.user)
        from_available = min(model.available, amount)
        model.available -= from_available
        model.owed += amount - from_available
        model.reversed += amount
        topup.reversed += amount
        topup.refund_keys.append(key)

    @precondition(lambda self: self.topups)
    @rule(data=st.data())
    def duplicate_event(self, data: st.DataObject) -> None:
        """A webhook or a task delivered again: a top-up, a refund or a capture repeated, writing nothing."""
        before = self.ledger_rows()
        refunded = [topup for topup in self.topups if topup.refund_keys]
        captured = [hold for hold in self.holds if hold.capture_keys]
        kinds = ["top-up"] + (["refund"] if refunded else []) + (["capture"] if captured else [])
        kind = data.draw(st.sampled_from(kinds), label="duplicate")
        if kind == "top-up":
            topup = data.draw(st.sampled_from(self.topups))
            txn = topup_credit(
                user=self.renter(topup.user),
                amount=topup.amount,
                reference_type="stripe_event",
                reference_id=topup.key,
                idempotency_key=topup.key,
            )
            assert txn.id == topup.txn_id
        elif kind == "refund":
            topup = data.draw(st.sampled_from(refunded))
            key = data.draw(st.sampled_from(topup.refund_keys))
            topup_reverse(
                topup=LedgerTransaction.objects.get(id=topup.txn_id), amount=topup.amount, idempotency_key=key
            )
        else:
            hold = data.draw(st.sampled_from(captured))
            key, payee = data.draw(st.sampled_from(hold.capture_keys))
            hold_capture(
                hold=Hold.objects.get(id=hold.id),
                amount=1,
                payee=self.payees[payee],
                fee_rate=FEE_RATES[0],
                idempotency_key=key,
            )
        assert self.ledger_rows() == before

    @rule(user=st.integers(0, 1), amount=st.integers(-3 * USD, 3 * USD).filter(bool))
    def adjustment(self, user: int, amount: int) -> None:
        model = self.model(user)
        call = lambda: adjustment_post(  # noqa: E731
            user=self.renter(user), amount=amount, memo="Support ticket", created_by=self.payees[0]
        )
        if amount < 0 and -amount > model.available:
            self.expect_refusal(call, "Insufficient funds")
            return
        call()
        model.available += amount
        model.adjusted += amount

    # --- holds -----------------------------------------------------------------------------------
    @rule(data=st.data(), user=st.integers(0, 1))
    def place_hold(self, data: st.DataObject, user: int) -> None:
        available = self.model(user).available
        amount = data.draw(
            st.one_of(st.integers(1, max(1, available)), st.just(available + 1), st.integers(1, 15 * USD)),
            label="amount",
        )
        reference = self.key("deploy")
        call = lambda: hold_place(  # noqa: E731
            user=self.renter(user), amount=amount, reference_type="deployment", reference_id=reference
        )
        refusal = self.place_in_model(user, amount)
        if refusal:
            self.expect_refusal(call, refusal)
            return
        hold = call()
        model = self.model(user)
        model.available -= amount
        model.reserved += amount
        self.holds.append(HoldModel(hold.id, self.renter(user).id, amount))

    @precondition(lambda self: any(hold.active for hold in self.holds))
    @rule(data=st.data(), payee=st.integers(0, 1), fee_rate=st.sampled_from(FEE_RATES))
    def capture(self, data: st.DataObject, payee: int, fee_rate: Decimal) -> None:
        hold = data.draw(st.sampled_from([hold for hold in self.holds if hold.active]))
        amount = data.draw(
            st.one_of(st.just(hold.remaining), st.just(hold.remaining + 1), st.integers(1, max(1, hold.remaining))),
            label="amount",
        )
        key = self.key("capture")
        call = lambda: hold_capture(  # noqa: E731
            hold=Hold.objects.get(id=hold.id),
            amount=amount,
            payee=self.payees[payee],
            fee_rate=fee_rate,
            idempotency_key=key,
        )
        if amount > hold.remaining:
            self.expect_refusal(call, "The hold does not cover this charge.")
            return
        call()
        self.capture_in_model(hold, amount, self.payees[payee].id, fee_for(amount, fee_rate))
        if amount:  # capturing nothing writes nothing, so leaves no key to repeat
            hold.capture_keys.append((key, payee))

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        hold = data.draw(st.sampled_from(self.holds))
        before = self.ledger_rows()
        hold_release(hold=Hold.objects.get(id=hold.id))
        if hold.active:
            self.release_in_model(hold)
        else:
            assert self.ledger_rows() == before

    # --- usage meters ----------------------------------------------------------------------------
    @rule(
        renter=st.integers(0, 1),
        payee=st.integers(0, 1),
        price=st.sampled_from(PRICES),
        hours=st.integers(1, 3),
        fee_rate=st.sampled_from(FEE_RATES),
    )
    def open_meter(self, renter: int, payee: int, price: int, hours: int, fee_rate: Decimal) -> None:
        reference = self.key("lease")
        amount = max(1, price * hours)
        call = lambda: meter_open(  # noqa: E731
            renter=self.renter(renter),
            payee=self.payees[payee],
            price_per_hour=price,
            fee_rate=fee_rate,
            hold_amount=amount,
            reference_type="lease",
            reference_id=reference,
            started_at=self.now,
        )
        refusal = self.place_in_model(renter, amount)
        if refusal:
            self.expect_refusal(call, refusal)
            return
        meter = call()
        model = self.model(renter)
        model.available -= amount
        model.reserved += amount
        hold = HoldModel(meter.hold_id, self.renter(renter).id, amount)
        self.meters.append(
            MeterModel(meter.id, hold, renter, self.payees[payee].id, price, fee_rate, self.now, reference)
        )

    @rule(seconds=st.one_of(st.integers(1, 120), st.integers(1, 3 * 3_600)))
    def advance_time(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: self.meters)
    @rule(
        seconds=st.one_of(st.just(0), st.integers(1, 120), st.sampled_from([3_000, 3_600]), st.integers(1, 2 * 3_600)),
        run=st.sampled_from(["hourly", "twice", "stale"]),
        stale_by=st.integers(1, 3_600),
    )
    def settle(self, seconds: int, run: str, stale_by: int) -> None:
        """The hourly run, after `seconds` pass: once, twice at the same moment, or a late duplicate
        of an earlier run (a task re-delivered with its old `now`)."""
        self.now += timedelta(seconds=seconds)
        now = self.now - timedelta(seconds=stale_by) if run == "stale" else self.now
        with TestCase.captureOnCommitCallbacks(execute=True):
            result = usage_settle_all(now=now, batch_size=3)
        assert result.charged == self.settle_in_model(now)
        if run == "twice":
            charges = LedgerTransaction.objects.filter(kind=TransactionKind.HOLD_CAPTURE).count()
            with TestCase.captureOnCommitCallbacks(execute=True):
                again = usage_settle_all(now=now, batch_size=3)
            assert (again.charged, again.transactions, again.entries) == (0, 0, 0)
            assert LedgerTransaction.objects.filter(kind=TransactionKind.HOLD_CAPTURE).count() == charges
            # Credits freed by a closure in the first run may still extend another meter's hold now.
            assert self.settle_in_model(now) == 0

    @precondition(lambda self: any(meter.closed_at is None for meter in self.meters))
    @rule(data=st.data())
    def close_meter(self, data: st.DataObject) -> None:
        meter = data.draw(st.sampled_from([meter for meter in self.meters if meter.closed_at is None]))
        meter_close(meter=UsageMeter.objects.get(id=meter.id), now=self.now)
        self.close_in_model(meter, self.now)

    @precondition(lambda self: any(meter.closed_at is None for meter in self.meters))
    @rule(data=st.data(), seconds=st.integers(1, 2 * 3_600))
    def record_downtime(self, data: st.DataObject, seconds: int) -> None:
        """The node was down: that time is not billed, even when it is recorded after a settlement."""
        meter = data.draw(st.sampled_from([meter for meter in self.meters if meter.closed_at is None]))
        UsageMeter.objects.filter(id=meter.id).update(excluded_seconds=F("excluded_seconds") + seconds)
        meter.excluded_seconds += seconds

    @precondition(lambda self: any(meter.hold.active and meter.closed_at is None for meter in self.meters))
    @rule(data=st.data())
    def release_a_running_meters_hold(self, data: st.DataObject) -> None:
        """An operator releases a running rental's hold by hand; the meter must cope."""
        meter = data.draw(st.sampled_from([m for m in self.meters if m.hold.active and m.closed_at is None]))
        hold_release(hold=Hold.objects.get(id=meter.hold.id))
        self.release_in_model(meter.hold)

    # --- the model of settlement -----------------------------------------------------------------
    def charge_meter_in_model(self, meter: MeterModel, now: datetime) -> int:
        due = meter.accrued(now) - meter.charged
        amount = min(due, meter.hold.remaining) if meter.hold.active else 0
        if amount <= 0:
            return 0
        fee = fee_for(meter.charged + amount, meter.fee_rate) - fee_for(meter.charged, meter.fee_rate)
        self.capture_in_model(meter.hold, amount, meter.payee, fee)
        meter.charged += amount
        return amount

    def close_in_model(self, meter: MeterModel, now: datetime) -> None:
        meter.closed_at = now
        self.charge_meter_in_model(meter, now)
        if meter.hold.active:
            self.release_in_model(meter.hold)

    def settle_in_model(self, now: datetime) -> int:
        charged = 0
        short = []
        for meter in self.meters:
            if meter.closed_at is not None:
                continue
            charged += self.charge_meter_in_model(meter, now)
            if meter.hold.remaining < meter.price:
                short.append(meter)
        for meter in short:
            hold = meter.hold
            # What the hold could not cover is charged as soon as the renter can pay it and the next hour.
            backlog = max(0, meter.accrued(now) - meter.charged)
            needed = meter.price + backlog - hold.remaining
            if hold.active and needed <= 0 and not backlog:
                continue
            user = self.users[hold.user]
            if hold.active and user.available >= needed:
                if needed > 0:
                    user.available -= needed
                    user.reserved += needed
                    hold.amount += needed
                charged += self.charge_meter_in_model(meter, now)
                meter.warned_at = None
                continue
            if meter.warned_at is None:
                meter.warned_at = now
                self.expected_warnings.append(meter.id)
            elif now - meter.warned_at >= WARNING_GRACE:
                self.expected_closures.append(("lease", meter.reference_id, "insufficient_funds"))
                self.close_in_model(meter, now)
        return charged

    # --- invariants ------------------------------------------------------------------------------
    @invariant()
    def ledger_sums_to_zero_overall_and_per_transaction(self) -> None:
        assert ledger_total() == 0
        unbalanced = LedgerEntry.objects.values("transaction").annotate(total=Sum("amount")).exclude(total=0)
        assert not unbalanced.exists()

    @invariant()
    def cached_balances_match_entries(self) -> None:
        assert list(cached_balances_mismatch()) == []

    @invariant()
    def no_user_funds_negative_and_debt_never_positive(self) -> None:
        lowest = LedgerAccount.objects.filter(
            kind__in=[AccountKind.USER_AVAILABLE, AccountKind.USER_RESERVED]
        ).aggregate(lowest=Min("balance"))["lowest"]
        assert lowest is None or lowest >= 0
        assert not LedgerAccount.objects.filter(kind=AccountKind.USER_DEBT, balance__gt=0).exists()

    @invariant()
    def every_micro_dollar_is_accounted_for(self) -> None:
        for renter in self.renters:
            model = self.users[renter.id]
            actual = user_balances(user=renter)
            assert (actual.available, actual.reserved, actual.debt) == (model.available, model.reserved, model.owed)
            assert (
                actual.available + actual.reserved - actual.debt
                == model.topped_up - model.reversed - model.captured + model.adjusted
            )
            # Reserved credits are exactly what the user's open holds still cover.
            open_holds = Hold.objects.filter(user=renter, status=Hold.Status.ACTIVE)
            covered = sum(hold.remaining for hold in open_holds)
            assert actual.reserved == covered
        captured = sum(model.captured for model in self.users.values())
        pending = {payee.id: user_balances(user=payee).earnings_pending for payee in self.payees}
        fees = LedgerAccount.objects.filter(kind=AccountKind.PLATFORM_FEES).aggregate(total=Sum("balance"))["total"]
        assert pending == self.pending
        assert (fees or 0) == self.fees
        assert sum(pending.values()) + (fees or 0) == captured
        taken_from_holds = LedgerEntry.objects.filter(
            transaction__kind=TransactionKind.HOLD_CAPTURE, account__kind=AccountKind.USER_RESERVED
        ).aggregate(total=Sum("amount"))["total"]
        assert -(taken_from_holds or 0) == captured

    @invariant()
    def holds_and_meters_match_the_model(self) -> None:
        for hold in self.holds + [meter.hold for meter in self.meters]:
            row = Hold.objects.get(id=hold.id)
            assert (row.amount, row.captured, row.released, row.status == Hold.Status.ACTIVE) == (
                hold.amount,
                hold.captured,
                hold.released,
                hold.active,
            )
        for meter in self.meters:
            row = UsageMeter.objects.get(id=meter.id)
            assert (row.charged, row.closed_at, row.low_balance_warned_at) == (
                meter.charged,
                meter.closed_at,
                meter.warned_at,
            )

    @invariant()
    def hooks_were_called_once_per_warning_and_closure(self) -> None:
        assert self.warned_by_hook == self.expected_warnings
        assert self.closed_by_hook == self.expected_closures


class TestLedgerStateMachine(LedgerMachine.TestCase, TestCase):
    settings = settings(
        max_examples=30,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
