"""Many threads move one renter's money at once: nothing is overspent, charged twice or lost.

Needs PostgreSQL (row locks; SQLite serialises writers, so there is no race to lose there). On a
developer's machine without DATABASE_URL the tests skip; under CI=true they fail instead, since
CI runs against PostgreSQL and a skipped race test would prove nothing.
"""

from __future__ import annotations

import random
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum

from billing.models import AccountKind, Hold, LedgerAccount, LedgerEntry, LedgerTransaction, TransactionKind, UsageMeter
from billing.selectors import user_balances
from billing.services import hold_capture, hold_place, hold_release, topup_credit
from billing.usage import fee_rate_for, meter_close, meter_open, usage_settle_all
from core.errors import ApplicationError
from tests.billing.conftest import T0, USD, assert_ledger_consistent
from tests.factories import make_user
from tests.needs import requires_postgresql

# Transactional: the threads need committed rows. serialized_rollback restores the reference data
# (GPU models, regions) that migrations load, for the tests that run after these.
pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    requires_postgresql("for row locks (SQLite serialises writers)"),
]

THREADS = 8
OPS_PER_THREAD = 25
FIZZ = fee_rate_for("fizz")


@pytest.fixture(scope="module", autouse=True)
def _reference_data_back_after_the_last_test(django_db_setup, django_db_blocker):
    """A transactional test empties every table when it ends; serialized_rollback only puts the
    data back when the next such test starts. Put it back after the last one too, so that a
    reused test database (--reuse-db) still holds the reference data next session."""
    yield
    contents = getattr(connection, "_test_serialized_contents", None)
    if contents and connection.vendor == "postgresql":
        with django_db_blocker.unblock():
            connection.creation.deserialize_db_from_string(contents)


def run_in_threads(count: int, work: Callable[[int], None]) -> list[str]:
    """Run work(0..count-1) in threads that start together; return the unexpected errors."""
    barrier = threading.Barrier(count)
    errors: list[str] = []

    def target(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(index)
        except Exception:  # noqa: BLE001 - every failure is reported by the test
            errors.append(traceback.format_exc())
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (lock wait?)"
    return errors


def fund(user, amount: int, key: str) -> None:
    topup_credit(user=user, amount=amount, reference_type="stripe_event", reference_id=key, idempotency_key=key)


def captured_from_holds() -> int:
    total = LedgerEntry.objects.filter(
        transaction__kind=TransactionKind.HOLD_CAPTURE, account__kind=AccountKind.USER_RESERVED
    ).aggregate(total=Sum("amount"))["total"]
    return -(total or 0)


def test_parallel_holds_captures_and_settlements_never_overspend_or_double_charge():
    renter = make_user(email="renter@example.test")
    providers = [make_user(email=f"provider{n}@example.test", is_provider=True) for n in range(3)]
    topped_up = 40 * USD
    fund(renter, topped_up, "evt_seed")
    # The hold that every thread captures from with the same keys, as duplicate tasks would.
    shared = hold_place(user=renter, amount=5 * USD, reference_type="deployment", reference_id="shared")

    def work(index: int) -> None:
        rng = random.Random(index)
        mine: list[Hold] = []
        meters: list[UsageMeter] = []
        for op in range(OPS_PER_THREAD):
            kind = rng.choices(
                ["hold", "capture", "shared_capture", "release", "meter", "settle", "close"],
                weights=[5, 4, 3, 2, 4, 4, 2],
            )[0]
            now = T0 + timedelta(minutes=5 * op + rng.randint(0, 4))
            try:
                if kind == "hold":
                    amount = rng.randint(1, 4 * USD)
                    mine.append(
                        hold_place(
                            user=renter, amount=amount, reference_type="deployment", reference_id=f"{index}:{op}"
                        )
                    )
                elif kind == "capture" and mine:
                    hold = rng.choice(mine)
                    hold_capture(
                        hold=hold,
                        amount=rng.randint(1, USD),
                        payee=rng.choice(providers),
                        fee_rate=FIZZ,
                        idempotency_key=f"capture:{index}:{op}",
                    )
                elif kind == "shared_capture":
                    step = rng.randint(0, 9)  # ten charges, each attempted by several threads
                    hold_capture(
                        hold=shared,
                        amount=400_000,
                        payee=providers[0],
                        fee_rate=FIZZ,
                        idempotency_key=f"shared:{step}",
                    )
                elif kind == "release" and mine:
                    hold_release(hold=mine.pop(rng.randrange(len(mine))))
                elif kind == "meter":
                    meters.append(
                        meter_open(
                            renter=renter,
                            payee=rng.choice(providers),
                            price_per_hour=rng.choice([360_000, 1 * USD, 2_345_678]),
                            fee_rate=FIZZ,
                            hold_amount=rng.randint(1, 2) * USD,
                            reference_type="lease",
                            reference_id=f"{index}:{op}",
                            started_at=now,
                        )
                    )
                elif kind == "settle":
                    usage_settle_all(now=now, batch_size=7)
                elif kind == "close" and meters:
                    meter_close(meter=meters.pop(rng.randrange(len(meters))), now=now + timedelta(minutes=30))
            except ApplicationError as error:
                # The refusals a user can meet here; anything else fails the test.
                assert error.message.startswith(
                    ("Insufficient funds", "The hold does not cover this charge.", "This hold is closed.")
                ), error.message

    errors = run_in_threads(THREADS, work)
    assert errors == [], "\n".join(errors)

    # Never overspent: what holds took and kept (charged, or still reserved) fits in what was topped up.
    kept = sum(hold.amount - hold.released for hold in Hold.objects.all())
    assert kept <= topped_up
    balances = user_balances(user=renter)
    assert balances.available >= 0 and balances.reserved >= 0
    captured = captured_from_holds()
    assert balances.available + balances.reserved == topped_up - captured
    open_holds = Hold.objects.filter(user=renter, status=Hold.Status.ACTIVE)
    assert balances.reserved == sum(hold.remaining for hold in open_holds)

    # Each shared charge went through once, however many threads tried it.
    shared_charges = LedgerTransaction.objects.filter(idempotency_key__startswith="shared:").count()
    shared.refresh_from_db()
    assert shared.captured == 400_000 * shared_charges

    # No double settlement: what each meter says it charged is what the ledger took from its hold.
    for meter in UsageMeter.objects.select_related("hold"):
        taken = LedgerEntry.objects.filter(
            transaction__kind=TransactionKind.HOLD_CAPTURE,
            transaction__reference_type=meter.reference_type,
            transaction__reference_id=meter.reference_id,
            account__kind=AccountKind.USER_RESERVED,
        ).aggregate(total=Sum("amount"))["total"]
        assert meter.charged == -(taken or 0) == meter.hold.captured
        # Threads use their own clocks, so a close may carry an earlier time than a settlement that
        # committed before it; what no meter may do is charge for time after the last moment used.
        latest = T0 + timedelta(minutes=5 * OPS_PER_THREAD + 30)
        assert meter.charged <= meter.price_per_hour * int((latest - meter.started_at).total_seconds()) // 3600
    assert sum(hold.captured for hold in Hold.objects.all()) == captured

    # Providers and the platform received exactly what renters were charged.
    earnings = LedgerAccount.objects.filter(kind=AccountKind.PROVIDER_PENDING).aggregate(total=Sum("balance"))["total"]
    fees = LedgerAccount.objects.filter(kind=AccountKind.PLATFORM_FEES).aggregate(total=Sum("balance"))["total"]
    assert (earnings or 0) + (fees or 0) == captured
    assert_ledger_consistent()
    assert UsageMeter.objects.exists() and captured > 0  # the run did exercise settlement


def test_parallel_settlement_runs_charge_each_meter_once():
    renters = [make_user(email=f"renter{n}@example.test") for n in range(4)]
    provider = make_user(email="provider@example.test", is_provider=True)
    for n, renter in enumerate(renters):
        fund(renter, 40 * USD, f"evt_{n}")
        for lease in range(10):
            meter_open(
                renter=renter,
                payee=provider,
                price_per_hour=1_234_567,
                fee_rate=FIZZ,
                hold_amount=2 * USD,
                reference_type="lease",
                reference_id=f"{n}:{lease}",
                started_at=T0,
            )
    moments = [T0 + timedelta(minutes=minutes) for minutes in (17, 43, 60, 60, 60, 61, 90, 90)]

    errors = run_in_threads(THREADS, lambda index: usage_settle_all(now=moments[index], batch_size=6))

    assert errors == [], "\n".join(errors)
    # The latest run wins, whatever order the runs committed in: each meter charged once up to 90 min.
    expected = 1_234_567 * 90 * 60 // 3600
    assert set(UsageMeter.objects.values_list("charged", flat=True)) == {expected}
    assert captured_from_holds() == 40 * expected
    assert_ledger_consistent()


def test_duplicate_deliveries_at_the_same_moment_write_once():
    renter = make_user(email="renter@example.test")
    provider = make_user(email="provider@example.test", is_provider=True)
    fund(renter, 10 * USD, "evt_seed")
    hold = hold_place(user=renter, amount=5 * USD, reference_type="deployment", reference_id="d1")

    def work(index: int) -> None:
        # Every thread delivers the same webhook, places the same deployment's hold, and runs the
        # same capture task: each must happen once, and no thread may see an error.
        fund(renter, 7 * USD, "evt_duplicate")
        hold_place(user=renter, amount=2 * USD, reference_type="deployment", reference_id="d2")
        hold_capture(hold=hold, amount=1 * USD, payee=provider, fee_rate=FIZZ, idempotency_key="capture:once")

    errors = run_in_threads(THREADS, work)

    assert errors == [], "\n".join(errors)
    assert LedgerTransaction.objects.filter(kind=TransactionKind.TOPUP).count() == 2
    assert Hold.objects.filter(reference_id="d2").count() == 1
    hold.refresh_from_db()
    assert hold.captured == 1 * USD
    balances = user_balances(user=renter)
    assert (balances.available, balances.reserved) == (17 * USD - 5 * USD - 2 * USD, 4 * USD + 2 * USD)
    assert_ledger_consistent()
