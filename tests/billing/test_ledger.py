"""The ledger's services: postings, top-ups, refunds and disputes, reversals and adjustments."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from billing.models import (
    AccountKind,
    Hold,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    TransactionKind,
)
from billing.selectors import Balances, cached_balances_mismatch, ledger_total, user_balances
from billing.services import (
    account_get,
    adjustment_post,
    hold_capture,
    hold_place,
    hold_release,
    topup_credit,
    topup_reverse,
    transaction_post,
    transaction_reverse,
)
from billing.usage import fee_rate_for
from core.errors import ApplicationError
from tests.billing.conftest import USD, assert_ledger_consistent, fund
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def balances(user):
    return user_balances(user=user)


def ledger_rows() -> tuple[int, int]:
    return LedgerTransaction.objects.count(), LedgerEntry.objects.count()


# --- transaction_post ----------------------------------------------------------------------------
class TestTransactionPost:
    def test_balanced_posting_moves_money_and_updates_cached_balances(self, renter):
        available = account_get(kind=AccountKind.USER_AVAILABLE, user=renter)
        clearing = account_get(kind=AccountKind.CLEARING_ADJUSTMENTS)

        txn = transaction_post(
            kind=TransactionKind.ADJUSTMENT,
            reference_type="user",
            reference_id=renter.id,
            lines=[(available, 1_500_000), (clearing, -1_500_000)],
        )

        assert txn.reference_id == str(renter.id)
        assert sorted(txn.entries.values_list("amount", flat=True)) == [-1_500_000, 1_500_000]
        assert balances(renter).available == 1_500_000
        clearing.refresh_from_db()
        assert clearing.balance == -1_500_000
        assert_ledger_consistent()

    def test_unbalanced_posting_is_refused_and_writes_nothing(self, renter):
        available = account_get(kind=AccountKind.USER_AVAILABLE, user=renter)
        clearing = account_get(kind=AccountKind.CLEARING_ADJUSTMENTS)

        with pytest.raises(ValueError, match="unbalanced transaction: entries sum to 1"):
            transaction_post(
                kind=TransactionKind.ADJUSTMENT,
                reference_type="user",
                reference_id="1",
                lines=[(available, 1_000_001), (clearing, -1_000_000)],
            )

        assert ledger_rows() == (0, 0)
        assert balances(renter).available == 0

    def test_non_integer_amounts_are_refused(self, renter):
        available = account_get(kind=AccountKind.USER_AVAILABLE, user=renter)
        clearing = account_get(kind=AccountKind.CLEARING_ADJUSTMENTS)
        for bad in (1.5, True):
            with pytest.raises(TypeError, match="integers of micro-USD"):
                transaction_post(
                    kind=TransactionKind.ADJUSTMENT,
                    reference_type="user",
                    reference_id="1",
                    lines=[(available, bad), (clearing, -1)],
                )
        assert ledger_rows() == (0, 0)

    def test_lines_that_cancel_out_are_refused(self, renter):
        available = account_get(kind=AccountKind.USER_AVAILABLE, user=renter)
        with pytest.raises(ValueError, match="at least one non-zero entry"):
            transaction_post(
                kind=TransactionKind.ADJUSTMENT,
                reference_type="user",
                reference_id="1",
                lines=[(available, 5), (available, -5)],
            )
        assert ledger_rows() == (0, 0)

    def test_lines_on_one_account_are_merged_into_one_entry(self, renter):
        available = account_get(kind=AccountKind.USER_AVAILABLE, user=renter)
        clearing = account_get(kind=AccountKind.CLEARING_ADJUSTMENTS)
        txn = transaction_post(
            kind=TransactionKind.ADJUSTMENT,
            reference_type="user",
            reference_id="1",
            lines=[(available, 300), (available, 200), (clearing, -500)],
        )
        assert txn.entries.count() == 2
        assert balances(renter).available == 500

    def test_same_idempotency_key_twice_writes_once(self, renter):
        available = account_get(kind=AccountKind.USER_AVAILABLE, user=renter)
        clearing = account_get(kind=AccountKind.CLEARING_ADJUSTMENTS)
        kwargs = dict(
            kind=TransactionKind.ADJUSTMENT,
            reference_type="user",
            reference_id="1",
            lines=[(available, 700), (clearing, -700)],
            idempotency_key="once",
        )
        first = transaction_post(**kwargs)
        second = transaction_post(**kwargs)

        assert second.pk == first.pk
        assert ledger_rows() == (1, 2)
        assert balances(renter).available == 700

    def test_overdrawing_available_credits_is_refused_with_a_clear_message(self, renter):
        fund(renter, 1_000)
        before = ledger_rows()
        available = account_get(kind=AccountKind.USER_AVAILABLE, user=renter)
        clearing = account_get(kind=AccountKind.CLEARING_ADJUSTMENTS)

        with pytest.raises(ApplicationError) as caught:
            transaction_post(
                kind=TransactionKind.ADJUSTMENT,
                reference_type="user",
                reference_id="1",
                lines=[(available, -1_001), (clearing, 1_001)],
            )

        assert caught.value.message == "Insufficient funds: the balance cannot cover this."
        assert caught.value.status == 409
        assert caught.value.extra == {"account": AccountKind.USER_AVAILABLE, "balance": 1_000, "needed": 1_001}
        assert ledger_rows() == before
        assert balances(renter).available == 1_000

    def test_a_debt_account_never_goes_positive(self, renter):
        debt = account_get(kind=AccountKind.USER_DEBT, user=renter)
        clearing = account_get(kind=AccountKind.CLEARING_ADJUSTMENTS)
        with pytest.raises(ValueError, match="debt account cannot go positive"):
            transaction_post(
                kind=TransactionKind.ADJUSTMENT,
                reference_type="user",
                reference_id="1",
                lines=[(debt, 1), (clearing, -1)],
            )
        assert ledger_rows() == (0, 0)


# --- topup_credit --------------------------------------------------------------------------------
class TestTopupCredit:
    def test_top_up_credits_available_from_stripe_clearing(self, renter):
        txn = fund(renter, 25 * USD)

        assert txn.kind == TransactionKind.TOPUP
        assert txn.memo == "Top-up"
        assert balances(renter) == Balances(
            available=25 * USD, reserved=0, debt=0, earnings_pending=0, earnings_settled=0
        )
        stripe = LedgerAccount.objects.get(kind=AccountKind.CLEARING_STRIPE, user=None)
        assert stripe.balance == -25 * USD
        assert_ledger_consistent()

    def test_duplicate_webhook_credits_once(self, renter):
        first = fund(renter, 10 * USD, key="evt_dup")
        second = fund(renter, 10 * USD, key="evt_dup")

        assert second.pk == first.pk
        assert balances(renter).available == 10 * USD
        assert LedgerTransaction.objects.filter(kind=TransactionKind.TOPUP).count() == 1

    @pytest.mark.parametrize("amount", [0, -5])
    def test_non_positive_top_up_is_refused(self, renter, amount):
        with pytest.raises(ApplicationError, match="A top-up must be a positive amount."):
            fund(renter, amount)
        assert ledger_rows() == (0, 0)

    def test_chain_deposit_uses_its_chain_clearing_account(self, renter):
        topup_credit(
            user=renter,
            amount=3 * USD,
            clearing_kind=AccountKind.CLEARING_CHAIN,
            clearing_key="8453",
            reference_type="chain_deposit",
            reference_id="8453:0xabc:0",
            idempotency_key="deposit:8453:0xabc:0",
        )
        chain = LedgerAccount.objects.get(kind=AccountKind.CLEARING_CHAIN, key="8453")
        assert chain.balance == -3 * USD
        assert balances(renter).available == 3 * USD

    def test_top_up_repays_debt_first(self, renter):
        topup = fund(renter, 10 * USD)
        hold_place(user=renter, amount=4 * USD, reference_type="lease", reference_id="1")
        topup_reverse(topup=topup, amount=10 * USD, idempotency_key="refund:1")  # 6 from available, 4 owed
        assert balances(renter).debt == 4 * USD

        txn = fund(renter, 10 * USD)

        assert balances(renter).debt == 0
        assert balances(renter).available == 6 * USD
        assert txn.memo == "Top-up; $4.00 repaid debt"
        assert_ledger_consistent()

    def test_top_up_smaller_than_the_debt_only_reduces_it(self, renter):
        topup = fund(renter, 10 * USD)
        hold_place(user=renter, amount=10 * USD, reference_type="lease", reference_id="1")
        topup_reverse(topup=topup, amount=10 * USD, idempotency_key="refund:1")

        fund(renter, 3 * USD)

        assert balances(renter).debt == 7 * USD
        assert balances(renter).available == 0


# --- topup_reverse -------------------------------------------------------------------------------
class TestTopupReverse:
    def test_full_refund_takes_the_credit_back(self, renter):
        topup = fund(renter, 20 * USD)

        refund = topup_reverse(topup=topup, amount=20 * USD, idempotency_key="refund:re_1", memo="Refunded")

        assert refund.kind == TransactionKind.REFUND
        assert (refund.reference_type, refund.reference_id) == ("topup", str(topup.id))
        assert balances(renter).available == 0
        assert balances(renter).debt == 0
        assert LedgerAccount.objects.get(kind=AccountKind.CLEARING_STRIPE).balance == 0
        assert_ledger_consistent()

    def test_duplicate_refund_event_reverses_once(self, renter):
        topup = fund(renter, 20 * USD)
        first = topup_reverse(topup=topup, amount=5 * USD, idempotency_key="refund:re_1")
        second = topup_reverse(topup=topup, amount=5 * USD, idempotency_key="refund:re_1")
        assert second.pk == first.pk
        assert balances(renter).available == 15 * USD

    def test_partial_refunds_never_exceed_the_top_up(self, renter):
        topup = fund(renter, 10 * USD)
        fund(renter, 50 * USD)  # other credit that a runaway refund could eat into

        topup_reverse(topup=topup, amount=6 * USD, idempotency_key="refund:a")
        second = topup_reverse(topup=topup, amount=6 * USD, idempotency_key="refund:b")
        assert -second.entries.get(account__kind=AccountKind.USER_AVAILABLE).amount == 4 * USD

        with pytest.raises(ApplicationError, match="already reversed in full") as caught:
            topup_reverse(topup=topup, amount=1, idempotency_key="refund:c")
        assert caught.value.status == 409
        assert balances(renter).available == 50 * USD

    def test_refunds_are_capped_even_when_another_top_up_shares_the_reference(self, renter):
        """A top-up recorded under ("topup", <id>) must not count as negative refunds of another."""
        topup = fund(renter, 10 * USD)
        topup_credit(
            user=renter,
            amount=50 * USD,
            reference_type="topup",
            reference_id=str(topup.id),  # e.g. the TopUp row whose id happens to equal this txn id
            idempotency_key="evt_other",
        )

        topup_reverse(topup=topup, amount=10 * USD, idempotency_key="refund:a")
        with pytest.raises(ApplicationError, match="already reversed in full"):
            topup_reverse(topup=topup, amount=10 * USD, idempotency_key="refund:b")

        assert balances(renter).available == 50 * USD

    def test_refund_beyond_available_becomes_debt_that_blocks_new_holds(self, renter):
        topup = fund(renter, 10 * USD)
        hold_place(user=renter, amount=7 * USD, reference_type="lease", reference_id="1")

        dispute = topup_reverse(
            topup=topup, amount=10 * USD, kind=TransactionKind.DISPUTE, idempotency_key="dispute:dp_1"
        )

        assert dispute.kind == TransactionKind.DISPUTE
        assert balances(renter).available == 0
        assert balances(renter).reserved == 7 * USD  # a running rental keeps its hold
        assert balances(renter).debt == 7 * USD
        fund(renter, 1 * USD)  # not enough to clear the debt
        with pytest.raises(ApplicationError) as caught:
            hold_place(user=renter, amount=1, reference_type="lease", reference_id="2")
        assert caught.value.message == "Your account owes $6.00 (a reversed payment). Top up to clear it first."
        assert caught.value.extra == {"debt_micros": 6 * USD}
        assert not Hold.objects.filter(reference_id="2").exists()
        assert_ledger_consistent()

    def test_only_top_ups_can_be_refunded(self, renter):
        fund(renter, 10 * USD)
        hold = hold_place(user=renter, amount=1 * USD, reference_type="lease", reference_id="1")
        place = LedgerTransaction.objects.get(kind=TransactionKind.HOLD_PLACE, reference_id=str(hold.id))
        with pytest.raises(ValueError, match="only top-ups"):
            topup_reverse(topup=place, amount=1, idempotency_key="refund:x")

    def test_refund_of_a_non_positive_amount_is_refused(self, renter):
        topup = fund(renter, 10 * USD)
        with pytest.raises(ApplicationError, match="positive amount"):
            topup_reverse(topup=topup, amount=0, idempotency_key="refund:zero")
        assert balances(renter).available == 10 * USD

    def test_refund_after_an_admin_reversal_of_the_same_top_up_takes_nothing_more(self, renter):
        topup = fund(renter, 10 * USD)
        fund(renter, 30 * USD)
        transaction_reverse(txn=topup, memo="Credited twice by mistake")

        with pytest.raises(ApplicationError, match="already reversed in full"):
            topup_reverse(topup=topup, amount=10 * USD, idempotency_key="refund:late")

        assert balances(renter).available == 30 * USD


# --- transaction_reverse -------------------------------------------------------------------------
class TestTransactionReverse:
    def test_reversal_posts_the_mirror_image(self, renter, outsider):
        admin = make_user(is_staff=True)
        adjustment = adjustment_post(user=renter, amount=2 * USD, memo="Goodwill credit", created_by=admin)

        reversal = transaction_reverse(txn=adjustment, memo="Wrong customer", created_by=admin)

        assert reversal.kind == TransactionKind.REVERSAL
        assert reversal.reverses_id == adjustment.id
        assert reversal.created_by == admin
        assert sorted(reversal.entries.values_list("amount", flat=True)) == [-2 * USD, 2 * USD]
        assert balances(renter).available == 0
        assert balances(outsider).available == 0
        assert_ledger_consistent()

    def test_double_reversal_is_refused(self, renter):
        topup = fund(renter, 5 * USD)
        transaction_reverse(txn=topup, memo="Duplicate credit")

        for txn in (topup, LedgerTransaction.objects.get(id=topup.id)):
            with pytest.raises(ApplicationError, match="already reversed") as caught:
                transaction_reverse(txn=txn, memo="Again")
            assert caught.value.status == 409
        assert LedgerTransaction.objects.filter(kind=TransactionKind.REVERSAL).count() == 1
        assert balances(renter).available == 0

    def test_double_reversal_is_refused_even_through_a_stale_instance(self, renter):
        topup = fund(renter, 5 * USD)
        stale = LedgerTransaction.objects.get(id=topup.id)
        assert not hasattr(stale, "reversed_by")  # a page looked, before someone else reversed it
        transaction_reverse(txn=topup, memo="Duplicate credit")

        with pytest.raises(ApplicationError, match="already reversed"):
            transaction_reverse(txn=stale, memo="Again")

    def test_reversal_needs_a_reason(self, renter):
        topup = fund(renter, 5 * USD)
        with pytest.raises(ApplicationError, match="needs a reason"):
            transaction_reverse(txn=topup, memo="  ")

    def test_reversal_that_would_overdraw_the_user_is_refused(self, renter):
        topup = fund(renter, 5 * USD)
        hold_place(user=renter, amount=4 * USD, reference_type="lease", reference_id="1")
        with pytest.raises(ApplicationError, match="Insufficient funds"):
            transaction_reverse(txn=topup, memo="Chargeback")
        assert balances(renter).available == 1 * USD
        assert not LedgerTransaction.objects.filter(kind=TransactionKind.REVERSAL).exists()

    def test_hold_placements_and_releases_cannot_be_reversed(self, renter):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=4 * USD, reference_type="lease", reference_id="1")
        place = LedgerTransaction.objects.get(kind=TransactionKind.HOLD_PLACE, reference_id=str(hold.id))
        with pytest.raises(ApplicationError, match="hold"):
            transaction_reverse(txn=place, memo="Oops")

        release = hold_release(hold=hold)
        with pytest.raises(ApplicationError, match="hold"):
            transaction_reverse(txn=release, memo="Oops")
        assert balances(renter).available == 5 * USD
        assert balances(renter).reserved == 0

    def test_reversing_a_usage_charge_refunds_the_renter_and_keeps_the_hold_whole(self, renter, provider):
        fund(renter, 5 * USD)
        hold = hold_place(user=renter, amount=4 * USD, reference_type="lease", reference_id="1")
        charge = hold_capture(
            hold=hold, amount=1 * USD, payee=provider, fee_rate=fee_rate_for("fizz"), idempotency_key="cap:1"
        )

        transaction_reverse(txn=charge, memo="Node was down")

        assert balances(renter).available == 2 * USD  # 1 never held + 1 refunded
        assert balances(renter).reserved == 3 * USD  # what the hold still covers
        assert balances(provider).earnings_pending == 0
        assert LedgerAccount.objects.get(kind=AccountKind.PLATFORM_FEES).balance == 0
        hold_release(hold=hold)
        assert balances(renter).available == 5 * USD
        assert balances(renter).reserved == 0
        assert_ledger_consistent()


# --- adjustment_post -----------------------------------------------------------------------------
class TestAdjustmentPost:
    def test_credit_and_debit_with_a_reason(self, renter):
        admin = make_user(is_staff=True)
        credit = adjustment_post(user=renter, amount=3 * USD, memo="Outage credit", created_by=admin)
        adjustment_post(user=renter, amount=-1 * USD, memo="Partial claw-back", created_by=admin)

        assert credit.kind == TransactionKind.ADJUSTMENT
        assert credit.created_by == admin
        assert credit.memo == "Outage credit"
        assert balances(renter).available == 2 * USD
        assert LedgerAccount.objects.get(kind=AccountKind.CLEARING_ADJUSTMENTS).balance == -2 * USD
        assert_ledger_consistent()

    def test_adjustment_needs_a_reason_and_an_amount(self, renter):
        admin = make_user(is_staff=True)
        with pytest.raises(ApplicationError, match="needs a reason"):
            adjustment_post(user=renter, amount=1, memo="", created_by=admin)
        with pytest.raises(ApplicationError, match="must not be zero"):
            adjustment_post(user=renter, amount=0, memo="Nothing", created_by=admin)
        assert ledger_rows() == (0, 0)

    def test_debit_beyond_available_is_refused(self, renter):
        admin = make_user(is_staff=True)
        fund(renter, 1 * USD)
        with pytest.raises(ApplicationError, match="Insufficient funds"):
            adjustment_post(user=renter, amount=-2 * USD, memo="Claw-back", created_by=admin)
        assert balances(renter).available == 1 * USD


# --- selectors -----------------------------------------------------------------------------------
class TestSelectors:
    def test_user_balances_of_a_new_user_are_zero(self, renter):
        assert balances(renter) == Balances(0, 0, 0, 0, 0)

    def test_user_balances_show_what_each_account_holds(self, renter, provider):
        fund(renter, 10 * USD)
        hold = hold_place(user=renter, amount=4 * USD, reference_type="lease", reference_id="1")
        hold_capture(hold=hold, amount=2 * USD, payee=provider, fee_rate=fee_rate_for("provider"), idempotency_key="c")

        assert balances(renter).available == 6 * USD
        assert balances(renter).reserved == 2 * USD
        assert balances(provider).earnings_pending == 1_900_000

    def test_ledger_total_and_cache_checks_catch_tampering(self, renter):
        fund(renter, 10 * USD)
        assert ledger_total() == 0 and not cached_balances_mismatch().exists()

        account = LedgerAccount.objects.get(kind=AccountKind.USER_AVAILABLE, user=renter)
        LedgerAccount.objects.filter(id=account.id).update(balance=account.balance + 1)
        assert list(cached_balances_mismatch()) == [account]

        LedgerEntry.objects.create(transaction=LedgerTransaction.objects.get(), account=account, amount=1)
        assert ledger_total() == 1
        assert not cached_balances_mismatch().exists()  # cache and entries agree again, the sum does not
        assert LedgerEntry.objects.aggregate(s=Sum("amount"))["s"] == 1
