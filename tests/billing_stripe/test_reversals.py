"""Refunds, lost disputes and failures, in any order: each micro-dollar reversed exactly once.

localstripe refunds real charges but emits no `charge.refunded` and knows no disputes, so those
events wrap the real charge (after the refund) or a dispute in Stripe's shape around it.
"""

from __future__ import annotations

import secrets

import pytest

from billing.models import Hold, LedgerEntry, StripeEvent, TopUp, TransactionKind
from billing.services import hold_place
from billing.stripe_service import WAITING_PREFIX, topup_create
from core.errors import ApplicationError
from tests.billing_stripe.conftest import (
    CARD_DECLINED,
    USD,
    assert_ledger_consistent,
    available,
    charge_of,
    debt,
    deliver,
    localstripe_event,
    make_event,
    pay,
)


@pytest.fixture
def paid(developer, stripe_client):
    """A $20 top-up paid on localstripe; returns (topup, its payment_intent.succeeded event)."""
    intent = topup_create(user=developer, amount_micros=20 * USD)
    pay(stripe_client, intent.payment_intent_id)
    return intent.topup, localstripe_event(stripe_client, "payment_intent.succeeded", intent.payment_intent_id)


@pytest.fixture
def credited(live_server, webhook_secret, paid):
    topup, event = paid
    assert deliver(live_server, event, webhook_secret).body["status"] == "processed"
    topup.refresh_from_db()
    return topup


def refund(stripe_client, topup: TopUp, cents: int | None = None) -> dict:
    """Refund on localstripe; returns a charge.refunded event around the refunded charge."""
    charge = charge_of(stripe_client, topup.stripe_payment_intent_id)
    params = {"charge": charge["id"]} | ({"amount": cents} if cents is not None else {})
    stripe_client.v1.refunds.create(params=params)
    return make_event("charge.refunded", charge_of(stripe_client, topup.stripe_payment_intent_id))


def dispute(stripe_client, topup: TopUp, *, status: str = "lost", cents: int = 2000) -> dict:
    charge = charge_of(stripe_client, topup.stripe_payment_intent_id)
    return make_event(
        "charge.dispute.closed",
        {
            "id": f"dp_test_{secrets.token_hex(6)}",
            "object": "dispute",
            "amount": cents,
            "currency": "usd",
            "charge": charge["id"],
            "payment_intent": topup.stripe_payment_intent_id,
            "reason": "fraudulent",
            "status": status,
        },
    )


def reversed_total(kind: str) -> int:
    return sum(
        LedgerEntry.objects.filter(transaction__kind=kind, account__kind="clearing_stripe").values_list(
            "amount", flat=True
        )
    )


def test_partial_then_full_refund_reverses_exactly_what_was_refunded(
    live_server, developer, webhook_secret, stripe_client, credited
):
    partial = refund(stripe_client, credited, cents=500)
    assert partial["data"]["object"]["amount_refunded"] == 500

    assert deliver(live_server, partial, webhook_secret).body["status"] == "processed"
    assert available(developer) == 15 * USD
    credited.refresh_from_db()
    assert credited.status == TopUp.Status.SUCCEEDED  # partly refunded: still a paid top-up

    full = refund(stripe_client, credited, cents=1500)  # the rest
    assert full["data"]["object"]["amount_refunded"] == 2000
    assert deliver(live_server, full, webhook_secret).body["status"] == "processed"

    assert available(developer) == 0
    assert reversed_total(TransactionKind.REFUND) == 20 * USD
    credited.refresh_from_db()
    assert credited.status == TopUp.Status.REFUNDED
    assert_ledger_consistent()


def test_repeated_refund_events_reverse_once(live_server, developer, webhook_secret, stripe_client, credited):
    event = refund(stripe_client, credited, cents=500)
    same_refund_other_event = {**event, "id": f"evt_test_{secrets.token_hex(8)}"}

    for delivered in (event, event, same_refund_other_event):
        assert deliver(live_server, delivered, webhook_secret).status == 200

    assert available(developer) == 15 * USD
    assert reversed_total(TransactionKind.REFUND) == 5 * USD
    assert StripeEvent.objects.filter(type="charge.refunded").count() == 2


def test_refund_events_out_of_order_reverse_the_cumulative_total(
    live_server, developer, webhook_secret, stripe_client, credited
):
    first = refund(stripe_client, credited, cents=500)
    second = refund(stripe_client, credited, cents=700)  # amount_refunded 1200 in total

    assert deliver(live_server, second, webhook_secret).body["status"] == "processed"
    late = deliver(live_server, first, webhook_secret)

    assert late.body["status"] == "processed"
    assert StripeEvent.objects.get(event_id=first["id"]).error == "Nothing new to reverse (already applied)."
    assert reversed_total(TransactionKind.REFUND) == 12 * USD
    assert available(developer) == 8 * USD
    assert_ledger_consistent()


def test_refund_after_spending_leaves_a_debt_that_blocks_new_holds(
    live_server, developer, webhook_secret, stripe_client, credited
):
    hold_place(user=developer, amount=15 * USD, reference_type="lease", reference_id="spent")
    assert available(developer) == 5 * USD

    assert deliver(live_server, refund(stripe_client, credited), webhook_secret).body["status"] == "processed"

    assert available(developer) == 0
    assert debt(developer) == 15 * USD
    assert reversed_total(TransactionKind.REFUND) == 20 * USD
    with pytest.raises(ApplicationError) as caught:
        hold_place(user=developer, amount=1 * USD, reference_type="lease", reference_id="next")
    assert caught.value.status == 409
    assert Hold.objects.count() == 1
    assert_ledger_consistent()


def test_next_topup_repays_the_debt_first(live_server, developer, webhook_secret, stripe_client, credited):
    hold_place(user=developer, amount=15 * USD, reference_type="lease", reference_id="spent")
    deliver(live_server, refund(stripe_client, credited), webhook_secret)
    assert debt(developer) == 15 * USD

    intent = topup_create(user=developer, amount_micros=25 * USD)
    pay(stripe_client, intent.payment_intent_id)
    event = localstripe_event(stripe_client, "payment_intent.succeeded", intent.payment_intent_id)
    deliver(live_server, event, webhook_secret)

    assert debt(developer) == 0
    assert available(developer) == 10 * USD
    assert_ledger_consistent()


def test_refund_before_the_payment_is_credited_waits_then_applies(
    live_server, developer, webhook_secret, stripe_client, paid
):
    topup, succeeded = paid
    early_refund = refund(stripe_client, topup, cents=800)

    early = deliver(live_server, early_refund, webhook_secret)

    assert early.status == 200
    assert early.body["status"] == "failed"
    waiting = StripeEvent.objects.get(event_id=early_refund["id"])
    assert waiting.error.startswith(WAITING_PREFIX)
    assert available(developer) == 0
    assert debt(developer) == 0  # nothing was taken from a payment never credited

    assert deliver(live_server, succeeded, webhook_secret).body["status"] == "processed"

    waiting.refresh_from_db()
    assert waiting.status == StripeEvent.Status.PROCESSED
    assert available(developer) == 12 * USD
    assert reversed_total(TransactionKind.REFUND) == 8 * USD
    # And a late redelivery of the refund changes nothing.
    assert deliver(live_server, early_refund, webhook_secret).body["status"] == "processed"
    assert available(developer) == 12 * USD
    assert_ledger_consistent()


def test_lost_dispute_reverses_the_top_up(live_server, developer, webhook_secret, stripe_client, credited):
    event = dispute(stripe_client, credited, cents=2000)

    assert deliver(live_server, event, webhook_secret).body["status"] == "processed"
    assert deliver(live_server, {**event, "id": f"evt_test_{secrets.token_hex(8)}"}, webhook_secret).status == 200

    assert available(developer) == 0
    assert reversed_total(TransactionKind.DISPUTE) == 20 * USD
    credited.refresh_from_db()
    assert credited.status == TopUp.Status.DISPUTED
    assert_ledger_consistent()


def test_won_dispute_changes_nothing(live_server, developer, webhook_secret, stripe_client, credited):
    delivery = deliver(live_server, dispute(stripe_client, credited, status="won"), webhook_secret)

    assert delivery.body["status"] == "processed"
    assert available(developer) == 20 * USD
    credited.refresh_from_db()
    assert credited.status == TopUp.Status.SUCCEEDED


def test_dispute_after_a_partial_refund_reverses_only_what_is_left(
    live_server, developer, webhook_secret, stripe_client, credited
):
    deliver(live_server, refund(stripe_client, credited, cents=500), webhook_secret)

    deliver(live_server, dispute(stripe_client, credited, cents=2000), webhook_secret)

    assert available(developer) == 0
    assert debt(developer) == 0
    assert reversed_total(TransactionKind.REFUND) + reversed_total(TransactionKind.DISPUTE) == 20 * USD
    assert_ledger_consistent()


def test_declined_card_marks_the_topup_failed(live_server, developer, webhook_secret, stripe_client):
    intent = topup_create(user=developer, amount_micros=10 * USD)
    with pytest.raises(Exception, match="declined"):
        pay(stripe_client, intent.payment_intent_id, card=CARD_DECLINED)
    event = localstripe_event(stripe_client, "payment_intent.payment_failed", intent.payment_intent_id)

    assert deliver(live_server, event, webhook_secret).body["status"] == "processed"

    topup = TopUp.objects.get()
    assert topup.status == TopUp.Status.FAILED
    assert topup.failure_message == "Your card was declined."
    assert available(developer) == 0


def test_stale_failure_after_success_does_not_unpay_the_topup(live_server, developer, webhook_secret, paid):
    topup, succeeded = paid
    deliver(live_server, succeeded, webhook_secret)
    failed_earlier = make_event(
        "payment_intent.payment_failed",
        {**succeeded["data"]["object"], "status": "requires_payment_method", "last_payment_error": {"message": "x"}},
    )

    assert deliver(live_server, failed_earlier, webhook_secret).status == 200

    topup.refresh_from_db()
    assert topup.status == TopUp.Status.SUCCEEDED
    assert available(developer) == 20 * USD


def test_paid_amount_that_differs_from_the_topup_is_not_credited(live_server, developer, webhook_secret, paid):
    topup, succeeded = paid
    intent = {**succeeded["data"]["object"], "amount": 1, "amount_received": 1}

    delivery = deliver(live_server, make_event("payment_intent.succeeded", intent), webhook_secret)

    assert delivery.body["status"] == "failed"
    assert "not credited" in StripeEvent.objects.get().error
    assert available(developer) == 0


def test_payment_naming_another_user_is_not_credited(live_server, developer, outsider, webhook_secret, paid):
    topup, succeeded = paid
    obj = succeeded["data"]["object"]
    intent = {**obj, "metadata": {**obj["metadata"], "user_id": str(outsider.id)}}

    delivery = deliver(live_server, make_event("payment_intent.succeeded", intent), webhook_secret)

    assert delivery.body["status"] == "failed"
    assert available(developer) == 0
    assert available(outsider) == 0
