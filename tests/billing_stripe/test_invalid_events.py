"""Signed events with values Stripe never sends (negative or huge amounts, an unknown currency,
wrong types, missing fields) are stored, marked invalid and answered 400: never a 500, never
credited, and a redelivery is not processed again (issue 18, point 4)."""

from __future__ import annotations

import json
import time

import pytest

from billing.models import StripeEvent, TopUp
from billing.stripe_service import stripe_event_replay, topup_create
from core.errors import ApplicationError
from tests.billing_stripe.conftest import (
    USD,
    assert_ledger_consistent,
    available,
    charge_of,
    deliver,
    localstripe_event,
    make_event,
    pay,
    post_webhook,
    sign,
)

BUDGET_SECONDS = 2.0  # a delivery through the live server, on a shared machine


@pytest.fixture
def paid(developer, stripe_client):
    intent = topup_create(user=developer, amount_micros=20 * USD)
    pay(stripe_client, intent.payment_intent_id)
    return intent.topup, localstripe_event(stripe_client, "payment_intent.succeeded", intent.payment_intent_id)


def delivered(live_server, event: dict, secret: str):
    started = time.perf_counter()
    delivery = deliver(live_server, event, secret)
    assert time.perf_counter() - started < BUDGET_SECONDS
    return delivery


def with_intent(succeeded: dict, **changes) -> dict:
    obj = {**succeeded["data"]["object"], **changes}
    for key in [key for key, value in changes.items() if value is ...]:
        del obj[key]
    return make_event("payment_intent.succeeded", obj)


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": -2000, "amount_received": -2000},
        {"amount": 10**30, "amount_received": 10**30},
        {"amount_received": 2**63},
        {"amount_received": "2000"},
        {"amount_received": 20.0},
        {"amount_received": True},
        {"amount": ..., "amount_received": ...},
        {"currency": "xyz"},
        {"currency": ["usd"]},
        {"currency": ...},
    ],
    ids=[
        "negative", "huge", "beyond-int64", "string", "float", "boolean", "missing-amount",
        "unknown-currency", "currency-list", "missing-currency",
    ],
)  # fmt: skip
def test_a_payment_with_values_stripe_never_sends_is_stored_invalid_and_answered_400(
    live_server, developer, webhook_secret, paid, changes
):
    topup, succeeded = paid
    event = with_intent(succeeded, **changes)

    delivery = delivered(live_server, event, webhook_secret)

    assert delivery.status == 400
    assert delivery.body["extra"] == {"status": "invalid", "event": event["id"]}
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.INVALID
    assert stored.payload == json.loads(json.dumps(event))
    assert available(developer) == 0
    topup.refresh_from_db()
    assert topup.status != TopUp.Status.SUCCEEDED


def test_a_redelivered_invalid_event_is_not_processed_again(live_server, developer, webhook_secret, paid):
    _topup, succeeded = paid
    event = with_intent(succeeded, amount_received=-1)

    first = delivered(live_server, event, webhook_secret)
    again = delivered(live_server, event, webhook_secret)

    assert (first.status, again.status) == (400, 400)
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.attempts == 1
    with pytest.raises(ApplicationError) as caught:
        stripe_event_replay(event=stored)
    assert caught.value.status == 409
    # The real payment, sent right, still credits.
    assert delivered(live_server, succeeded, webhook_secret).body["status"] == "processed"
    assert available(developer) == 20 * USD
    assert_ledger_consistent()


@pytest.mark.parametrize(
    "changes",
    [{"amount_refunded": -500}, {"amount_refunded": 10**25}, {"amount_refunded": None}, {"currency": 5}],
    ids=["negative", "huge", "missing", "currency-number"],
)
def test_a_refund_with_values_stripe_never_sends_reverses_nothing(
    live_server, developer, webhook_secret, stripe_client, paid, changes
):
    topup, succeeded = paid
    assert delivered(live_server, succeeded, webhook_secret).body["status"] == "processed"
    charge = {**charge_of(stripe_client, topup.stripe_payment_intent_id), **changes}

    delivery = delivered(live_server, make_event("charge.refunded", charge), webhook_secret)

    assert delivery.status == 400
    assert available(developer) == 20 * USD
    assert_ledger_consistent()


@pytest.mark.parametrize("created", [10**20, -(10**20), 0, "yesterday", 1.5, True])
def test_an_event_whose_created_is_not_a_time_is_stored_invalid(live_server, webhook_secret, paid, created):
    _topup, succeeded = paid
    event = {**succeeded, "id": f"{succeeded['id']}_c", "created": created}

    delivery = delivered(live_server, event, webhook_secret)

    assert delivery.status == 400
    assert StripeEvent.objects.get(event_id=event["id"]).status == StripeEvent.Status.INVALID


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": "evt_nan", "type": "payment_intent.succeeded", "created": 1700000000, "data": {"object": NaN}}',
        b'{"id": "evt_nul", "type": "payment_intent.succeeded", "created": 1700000000, "data": {"object": "\\u0000"}}',
        b'{"id": "evt_sur", "type": "payment_intent.succeeded", "created": 1700000000, "x": "\\ud800"}',
        b'{"id": "evt_big", "type": "payment_intent.succeeded", "created": 1700000000, "x": ' + b"9" * 5000 + b"}",
        b'{"id": "evt_deep", "type": "x", "created": 1700000000, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'["not", "an", "object"]',
        b'{"id": "evt_longtype", "type": "' + b"t" * 500 + b'", "created": 1700000000}',
    ],
    ids=["nan", "nul", "lone-surrogate", "5000-digits", "deep", "array", "long-type"],
)
def test_a_signed_payload_no_database_could_store_is_a_400(live_server, webhook_secret, transactional_db, payload):
    started = time.perf_counter()
    delivery = post_webhook(live_server, payload, sign(payload, webhook_secret))

    assert time.perf_counter() - started < BUDGET_SECONDS
    assert delivery.status == 400
    assert StripeEvent.objects.count() == 0
