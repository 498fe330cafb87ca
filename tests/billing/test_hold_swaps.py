"""Batch hold swaps (`hold_swaps`) and the meters opened with them (`meters_open_swapping`): the same
postings as one `hold_swap` at a time, refusals that write nothing, and a fixed number of queries."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import Hold, LedgerEntry, LedgerTransaction, TransactionKind, UsageMeter
from billing.selectors import user_balances
from billing.services import HoldSwap, hold_capture, hold_place, hold_swap, hold_swaps, topup_reverse
from billing.usage import MeterSwap, fee_rate_for, meters_open_swapping
from core.errors import ApplicationError
from tests.billing.conftest import T0, USD, assert_ledger_consistent, fund
from tests.factories import make_user

pytestmark = pytest.mark.django_db

FIZZ = fee_rate_for("fizz")
_refs = count(1)


def balances(user):
    return user_balances(user=user)


def fresh(obj):
    obj.refresh_from_db()
    return obj


def ledger_rows() -> int:
    return LedgerTransaction.objects.count() + LedgerEntry.objects.count()


def funded_hold(amount: int, *, funds: int = 10 * USD, captured: int = 0, payee=None, user=None) -> Hold:
    """A new user (unless given) funded with `funds`, holding `amount` of it, `captured` already charged."""
    user = user or make_user()
    if funds:
        fund(user, funds)
    ref = f"dep-{next(_refs)}"
    hold = hold_place(user=user, amount=amount, reference_type="deployment", reference_id=ref)
    if captured:
        hold_capture(hold=hold, amount=captured, payee=payee, fee_rate=FIZZ, idempotency_key=f"cap:{ref}")
    return fresh(hold)


def swap_postings(old: Hold) -> list[tuple[str, list[tuple[str, bool, int]]]]:
    """The HOLD_SWAP transactions posted for `old`: key and (account kind, owned by the hold's user, amount)."""
    return [
        (
            txn.idempotency_key,
            sorted((e.account.kind, e.account.user_id == old.user_id, e.amount) for e in txn.entries.all()),
        )
        for txn in LedgerTransaction.objects.filter(
            kind=TransactionKind.HOLD_SWAP, reference_type="hold", reference_id=str(old.id)
        )
    ]


# (funds, hold placed, captured from it, new amount): less, equal, more, more from a fully captured hold
SCENARIOS = [
    (10 * USD, 6 * USD, 1 * USD, 2 * USD),
    (10 * USD, 3 * USD, 0, 3 * USD),
    (10 * USD, 3 * USD, 0, 7 * USD),
    (10 * USD, 4 * USD, 4 * USD, 1 * USD),
]


class TestSameAsOneAtATime:
    def _world(self, provider) -> list[tuple[Hold, int]]:
        return [
            (funded_hold(placed, funds=funds, captured=captured, payee=provider), new_amount)
            for funds, placed, captured, new_amount in SCENARIOS
        ]

    def _outcome(self, old: Hold, new: Hold, prefix: str) -> dict:
        old, stored = fresh(old), Hold.objects.get(id=new.id)
        key = f"hold:{old.id}:swap"
        return {
            "new": (
                stored.user_id == old.user_id,
                stored.amount,
                stored.captured,
                stored.released,
                stored.status,
                stored.reference_type,
                stored.reference_id.removeprefix(prefix),
            ),
            "old": (old.status, old.captured, old.released, old.closed_at is not None),
            "postings": [(k == key, entries) for k, entries in swap_postings(old)],
            "balances": balances(old.user),
        }

    def test_a_batch_writes_what_one_swap_at_a_time_writes(self, provider):
        one_by_one = self._world(provider)
        batched = self._world(provider)

        singles = [
            hold_swap(hold=old, amount=amount, reference_type="lease", reference_id=f"A{n}")
            for n, (old, amount) in enumerate(one_by_one)
        ]
        results = hold_swaps([HoldSwap(old.id, amount, "lease", f"B{n}") for n, (old, amount) in enumerate(batched)])

        assert all(isinstance(result, Hold) for result in results)
        expected = [self._outcome(old, new, "A") for (old, _), new in zip(one_by_one, singles, strict=True)]
        actual = [self._outcome(old, new, "B") for (old, _), new in zip(batched, results, strict=True)]
        assert actual == expected
        assert_ledger_consistent()

    def test_a_batch_posts_the_difference_by_hand(self, provider):
        batched = self._world(provider)
        rows = LedgerTransaction.objects.count()

        results = hold_swaps([HoldSwap(old.id, amount, "lease", f"B{n}") for n, (old, amount) in enumerate(batched)])

        assert [(r.amount, r.reference_type, r.reference_id, r.remaining) for r in results] == [
            (2 * USD, "lease", "B0", 2 * USD),
            (3 * USD, "lease", "B1", 3 * USD),
            (7 * USD, "lease", "B2", 7 * USD),
            (1 * USD, "lease", "B3", 1 * USD),
        ]
        assert [r.user_id for r in results] == [old.user_id for old, _ in batched]
        olds = [fresh(old) for old, _ in batched]
        assert [(o.status, o.released) for o in olds] == [
            ("closed", 5 * USD),
            ("closed", 3 * USD),
            ("closed", 3 * USD),
            ("closed", 0),
        ]
        assert [o.remaining for o in olds] == [0, 0, 0, 0]
        # No posting for the swap of equal amounts.
        assert LedgerTransaction.objects.count() == rows + 3
        assert [swap_postings(o) for o in olds] == [
            [(f"hold:{olds[0].id}:swap", [("user_available", True, 3 * USD), ("user_reserved", True, -3 * USD)])],
            [],
            [(f"hold:{olds[2].id}:swap", [("user_available", True, -4 * USD), ("user_reserved", True, 4 * USD)])],
            [(f"hold:{olds[3].id}:swap", [("user_available", True, -1 * USD), ("user_reserved", True, 1 * USD)])],
        ]
        assert [(balances(o.user).available, balances(o.user).reserved) for o in olds] == [
            (7 * USD, 2 * USD),
            (7 * USD, 3 * USD),
            (3 * USD, 7 * USD),
            (5 * USD, 1 * USD),
        ]
        assert_ledger_consistent()


class TestSameUserTwice:
    def test_two_swaps_of_one_user_move_the_balances_by_their_sum(self):
        first = funded_hold(4 * USD)  # available 6
        second = funded_hold(2 * USD, funds=0, user=first.user)  # available 4

        results = hold_swaps([HoldSwap(first.id, 1 * USD, "lease", "1"), HoldSwap(second.id, 4 * USD, "lease", "2")])

        assert [r.amount for r in results] == [1 * USD, 4 * USD]
        # +3 back from the first, -2 taken by the second
        assert (balances(first.user).available, balances(first.user).reserved) == (5 * USD, 5 * USD)
        assert LedgerTransaction.objects.filter(kind=TransactionKind.HOLD_SWAP).count() == 2
        assert_ledger_consistent()

    def test_swaps_that_cancel_out_still_post_both_and_keep_the_caches_right(self):
        first = funded_hold(4 * USD)
        second = funded_hold(2 * USD, funds=0, user=first.user)
        before = balances(first.user)

        hold_swaps([HoldSwap(first.id, 1 * USD, "lease", "1"), HoldSwap(second.id, 5 * USD, "lease", "2")])

        assert balances(first.user) == before
        assert LedgerEntry.objects.filter(transaction__kind=TransactionKind.HOLD_SWAP).count() == 4
        assert_ledger_consistent()

    def test_credit_returned_by_an_earlier_swap_pays_for_a_later_one(self):
        first = funded_hold(4 * USD, funds=6 * USD)
        second = funded_hold(2 * USD, funds=0, user=first.user)
        assert balances(first.user).available == 0

        results = hold_swaps([HoldSwap(first.id, 1 * USD, "lease", "1"), HoldSwap(second.id, 4 * USD, "lease", "2")])

        assert [r.amount for r in results] == [1 * USD, 4 * USD]
        assert (balances(first.user).available, balances(first.user).reserved) == (1 * USD, 5 * USD)
        assert_ledger_consistent()

    def test_in_the_other_order_the_later_credit_comes_too_late_as_one_at_a_time(self):
        first = funded_hold(4 * USD, funds=6 * USD)
        second = funded_hold(2 * USD, funds=0, user=first.user)

        results = hold_swaps([HoldSwap(second.id, 4 * USD, "lease", "2"), HoldSwap(first.id, 1 * USD, "lease", "1")])

        assert isinstance(results[0], ApplicationError) and "Insufficient funds" in results[0].message
        assert isinstance(results[1], Hold) and results[1].amount == 1 * USD
        assert fresh(second).status == Hold.Status.ACTIVE
        assert (balances(first.user).available, balances(first.user).reserved) == (3 * USD, 3 * USD)
        assert_ledger_consistent()


class TestRefusals:
    def test_refused_swaps_write_nothing_while_the_others_go_through_in_order(self):
        closed = funded_hold(3 * USD)
        hold_swap(hold=closed, amount=2 * USD, reference_type="lease", reference_id="earlier")
        twice = funded_hold(3 * USD)
        in_debt_user = make_user()
        topup = fund(in_debt_user, 10 * USD)
        in_debt = funded_hold(10 * USD, funds=0, user=in_debt_user)
        topup_reverse(topup=topup, amount=2 * USD, idempotency_key="refund:debt")
        short = funded_hold(3 * USD, funds=4 * USD)
        fine = funded_hold(5 * USD)
        refused_users = [closed.user, in_debt.user, short.user]
        before = {user.id: balances(user) for user in refused_users}
        rows = ledger_rows()

        results = hold_swaps(
            [
                HoldSwap(closed.id, 1 * USD, "lease", "closed"),
                HoldSwap(twice.id, 1 * USD, "lease", "twice-1"),
                HoldSwap(in_debt.id, 11 * USD, "lease", "debt"),
                HoldSwap(twice.id, 2 * USD, "lease", "twice-2"),
                HoldSwap(short.id, 4 * USD + 1, "lease", "short"),
                HoldSwap(fine.id, 2 * USD, "lease", "fine"),
            ]
        )

        refusals = [r for r in results if isinstance(r, ApplicationError)]
        refused, accepted = ApplicationError, Hold
        assert [type(r) for r in results] == [refused, accepted, refused, refused, refused, accepted]
        assert all(r.status == 409 for r in refusals)
        assert [r.message for r in refusals] == [
            "This hold is closed.",
            "Your account owes $2.00 (a reversed payment). Top up to clear it first.",
            "This hold is swapped twice in one batch.",
            "Insufficient funds: the balance cannot cover this.",
        ]
        assert [results[1].reference_id, results[5].reference_id] == ["twice-1", "fine"]
        assert (results[1].user_id, results[5].user_id) == (twice.user_id, fine.user_id)
        assert set(Hold.objects.filter(reference_type="lease").values_list("reference_id", flat=True)) == {
            "earlier",
            "twice-1",
            "fine",
        }
        assert (fresh(in_debt).status, fresh(short).status) == (Hold.Status.ACTIVE, Hold.Status.ACTIVE)
        assert fresh(in_debt).released == 0 and fresh(short).released == 0
        assert {user.id: balances(user) for user in refused_users} == before
        # Two postings (one per accepted swap), two entries each; nothing for the refused ones.
        assert ledger_rows() == rows + 2 + 4
        assert (balances(twice.user).available, balances(twice.user).reserved) == (9 * USD, 1 * USD)
        assert (balances(fine.user).available, balances(fine.user).reserved) == (8 * USD, 2 * USD)
        assert_ledger_consistent()

    def test_debt_does_not_block_a_swap_for_less(self):
        user = make_user()
        topup = fund(user, 10 * USD)
        old = funded_hold(10 * USD, funds=0, user=user)
        topup_reverse(topup=topup, amount=2 * USD, idempotency_key="refund:less")

        [new] = hold_swaps([HoldSwap(old.id, 4 * USD, "lease", "1")])

        assert isinstance(new, Hold) and new.amount == 4 * USD
        assert (balances(user).available, balances(user).reserved, balances(user).debt) == (6 * USD, 4 * USD, 2 * USD)
        assert_ledger_consistent()

    def test_an_unknown_hold_is_refused_as_closed(self):
        fine = funded_hold(3 * USD)

        results = hold_swaps([HoldSwap(10**9, 1 * USD, "lease", "ghost"), HoldSwap(fine.id, 1 * USD, "lease", "1")])

        assert isinstance(results[0], ApplicationError) and results[0].status == 409
        assert isinstance(results[1], Hold)
        assert not Hold.objects.filter(reference_id="ghost").exists()

    @pytest.mark.parametrize("amount", [0, -1])
    def test_a_non_positive_amount_raises_before_anything_is_written(self, amount):
        fine = funded_hold(3 * USD)
        rows = ledger_rows()

        with pytest.raises(ApplicationError, match="positive amount"):
            hold_swaps([HoldSwap(fine.id, 1 * USD, "lease", "1"), HoldSwap(fine.id, amount, "lease", "2")])

        assert ledger_rows() == rows
        assert fresh(fine).status == Hold.Status.ACTIVE
        assert not Hold.objects.filter(reference_type="lease").exists()

    def test_an_empty_batch_returns_nothing(self):
        assert hold_swaps([]) == []


class TestSwapForMore:
    def test_taking_more_than_the_hold_had_left_moves_the_difference_to_reserved(self, provider):
        old = funded_hold(5 * USD, funds=10 * USD, captured=2 * USD, payee=provider)  # 3 left

        [new] = hold_swaps([HoldSwap(old.id, 6 * USD, "lease", "1")])

        assert new.amount == 6 * USD
        assert fresh(old).released == 3 * USD
        assert (balances(old.user).available, balances(old.user).reserved) == (2 * USD, 6 * USD)
        [(_, entries)] = swap_postings(old)
        assert entries == [("user_available", True, -3 * USD), ("user_reserved", True, 3 * USD)]
        assert_ledger_consistent()


class TestQueryCount:
    def _queries(self, holds: list[Hold], amount: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            results = hold_swaps([HoldSwap(h.id, amount, "lease", f"q-{h.id}") for h in holds])
        assert all(isinstance(r, Hold) for r in results)
        return len(queries.captured_queries)

    @pytest.mark.parametrize(
        "amount",
        [
            pytest.param(1 * USD, id="for-less"),
            pytest.param(3 * USD, id="equal"),
            pytest.param(5 * USD, id="for-more"),
        ],
    )
    def test_queries_do_not_grow_with_the_number_of_swaps(self, amount):
        few = [funded_hold(3 * USD) for _ in range(2)]
        many = [funded_hold(3 * USD) for _ in range(10)]

        assert self._queries(many, amount) == self._queries(few, amount)


class TestMetersOpenSwapping:
    def test_opens_one_meter_per_swap_and_none_for_a_refusal(self, provider):
        first = funded_hold(6 * USD)
        refused = funded_hold(3 * USD, funds=3 * USD)
        second = funded_hold(3 * USD)
        other_payee = make_user(is_provider=True)
        provider_rate = fee_rate_for("provider")

        def item(hold, payee, price, rate, amount, ref):
            return MeterSwap(hold.id, payee.id, price, rate, amount, "lease", ref, T0)

        results = meters_open_swapping(
            [
                item(first, provider, 1 * USD, FIZZ, 2 * USD, "m1"),
                item(refused, provider, 1 * USD, FIZZ, 4 * USD, "m2"),
                item(second, other_payee, 250_000, provider_rate, 3 * USD, "m3"),
            ]
        )

        assert isinstance(results[1], ApplicationError) and "Insufficient funds" in results[1].message
        meters = [UsageMeter.objects.select_related("hold").get(id=results[n].id) for n in (0, 2)]
        assert [
            (m.hold.amount, m.hold.status, m.hold.reference_id, m.renter_id, m.payee_id, m.price_per_hour)
            for m in meters
        ] == [
            (2 * USD, "active", "m1", first.user_id, provider.id, 1 * USD),
            (3 * USD, "active", "m3", second.user_id, other_payee.id, 250_000),
        ]
        assert [(m.fee_rate, m.reference_type, m.reference_id, m.started_at) for m in meters] == [
            (Decimal("0.0700"), "lease", "m1", T0),
            (Decimal("0.0500"), "lease", "m3", T0),
        ]
        assert [m.hold.user_id for m in meters] == [first.user_id, second.user_id]
        assert UsageMeter.objects.count() == 2 and not UsageMeter.objects.filter(reference_id="m2").exists()
        assert fresh(refused).status == Hold.Status.ACTIVE and fresh(first).status == Hold.Status.CLOSED
        assert not Hold.objects.filter(reference_id="m2").exists()
        assert_ledger_consistent()

    def test_a_negative_price_raises_before_anything_is_written(self, provider):
        old = funded_hold(3 * USD)
        rows = ledger_rows()

        with pytest.raises(ApplicationError, match="negative"):
            meters_open_swapping([MeterSwap(old.id, provider.id, -1, FIZZ, 1 * USD, "lease", "m1", T0)])

        assert ledger_rows() == rows and not UsageMeter.objects.exists()
        assert fresh(old).status == Hold.Status.ACTIVE
