"""Starting a card top-up: a TopUp row, then a PaymentIntent on (local)Stripe; no credit yet."""

from __future__ import annotations

import pytest
from django.db import transaction

from billing.models import LedgerTransaction, TopUp
from billing.stripe_service import TOPUP_MAX_MICROS, TOPUP_MIN_MICROS, topup_create
from core.errors import ApplicationError
from tests.billing_stripe.conftest import USD, available


def test_topup_creates_a_payment_intent_in_cents_with_our_metadata(developer, stripe_client):
    intent = topup_create(user=developer, amount_micros=25 * USD)

    topup = intent.topup
    assert topup.status == TopUp.Status.PENDING
    assert topup.amount == 25 * USD
    assert topup.stripe_payment_intent_id == intent.payment_intent_id
    remote = stripe_client.v1.payment_intents.retrieve(intent.payment_intent_id)
    assert remote.amount == 2500
    assert remote.currency == "usd"
    assert remote.metadata.to_dict() == {"topup_id": str(topup.id), "user_id": str(developer.id)}
    assert intent.client_secret == remote.client_secret
    assert intent.client_secret.startswith(intent.payment_intent_id)
    assert intent.publishable_key.startswith("pk_test_")
    # Credits come only from the webhook.
    assert LedgerTransaction.objects.count() == 0
    assert available(developer) == 0


@pytest.mark.parametrize("amount", [TOPUP_MIN_MICROS, TOPUP_MAX_MICROS, 12 * USD + 340_000])
def test_amounts_within_bounds_in_whole_cents_are_accepted(developer, stripe_client, amount):
    intent = topup_create(user=developer, amount_micros=amount)

    assert stripe_client.v1.payment_intents.retrieve(intent.payment_intent_id).amount == amount // 10_000


@pytest.mark.parametrize(
    "amount",
    [
        TOPUP_MIN_MICROS - 10_000,  # $4.99
        TOPUP_MAX_MICROS + 10_000,  # $10,000.01
        0,
        -5 * USD,
        10 * USD + 5_000,  # half a cent
        True,
        "10000000",
    ],
)
def test_amount_outside_bounds_or_not_whole_cents_is_refused(developer, stripe_settings, amount):
    with pytest.raises(ApplicationError) as caught:
        topup_create(user=developer, amount_micros=amount)

    assert caught.value.status == 400
    assert caught.value.extra["field"] == "amount"
    assert TopUp.objects.count() == 0


@pytest.mark.parametrize("missing", ["STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET"])
def test_without_stripe_configuration_card_payments_are_not_configured(developer, stripe_settings, settings, missing):
    setattr(settings, missing, None)

    with pytest.raises(ApplicationError) as caught:
        topup_create(user=developer, amount_micros=10 * USD)

    assert caught.value.status == 503
    assert caught.value.message == "Card payments are not configured on this server."
    assert TopUp.objects.count() == 0


def test_stripe_refusal_marks_the_topup_failed_and_says_so(developer, stripe_settings, settings):
    settings.STRIPE_SECRET_KEY = "not-a-stripe-key"  # localstripe answers 401, as Stripe would

    with pytest.raises(ApplicationError) as caught:
        topup_create(user=developer, amount_micros=10 * USD)

    assert caught.value.status == 502
    assert "No money was taken" in caught.value.message
    topup = TopUp.objects.get()
    assert topup.status == TopUp.Status.FAILED
    assert topup.failure_message.startswith("Stripe:")
    assert topup.stripe_payment_intent_id is None


def test_unreachable_stripe_is_a_502_not_a_500(developer, stripe_settings, settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # discard port: nothing listens

    with pytest.raises(ApplicationError) as caught:
        topup_create(user=developer, amount_micros=10 * USD)

    assert caught.value.status == 502
    assert TopUp.objects.get().status == TopUp.Status.FAILED


def test_topup_create_refuses_to_call_stripe_inside_a_database_transaction(developer, stripe_settings):
    with pytest.raises(RuntimeError), transaction.atomic():
        topup_create(user=developer, amount_micros=10 * USD)

    assert TopUp.objects.count() == 0
