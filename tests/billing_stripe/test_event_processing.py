"""The event service without HTTP: failures are recorded, retried by redelivery or Replay, once."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from billing import stripe_service
from billing.models import LedgerTransaction, StripeEvent, TransactionKind
from billing.stripe_service import stripe_event_receive, stripe_event_replay, topup_create
from core.errors import ApplicationError
from tests.billing_stripe.conftest import USD, available, localstripe_event, pay, sign
from tests.needs import requires_postgresql


@pytest.fixture
def succeeded_event(developer, stripe_client):
    intent = topup_create(user=developer, amount_micros=10 * USD)
    pay(stripe_client, intent.payment_intent_id)
    return localstripe_event(stripe_client, "payment_intent.succeeded", intent.payment_intent_id)


def receive(event: dict, secret: str) -> StripeEvent:
    payload = json.dumps(event).encode()
    return stripe_event_receive(payload=payload, signature=sign(payload, secret))


@pytest.fixture
def broken_credit(monkeypatch):
    """The database fails while crediting, once."""
    real = stripe_service.topup_credit
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("connection to the database was lost")
        return real(**kwargs)

    monkeypatch.setattr(stripe_service, "topup_credit", flaky)
    return calls


def test_a_failed_event_is_recorded_and_replay_credits_it_once(
    developer, webhook_secret, succeeded_event, broken_credit
):
    stored = receive(succeeded_event, webhook_secret)

    assert stored.status == StripeEvent.Status.FAILED
    assert "connection to the database was lost" in stored.error
    assert stored.attempts == 1
    assert available(developer) == 0  # the failed attempt wrote nothing

    replayed = stripe_event_replay(event=stored)

    assert replayed.status == StripeEvent.Status.PROCESSED
    assert replayed.error == ""
    assert replayed.attempts == 2
    assert available(developer) == 10 * USD
    with pytest.raises(ApplicationError) as caught:
        stripe_event_replay(event=replayed)
    assert caught.value.status == 409
    assert available(developer) == 10 * USD


def test_redelivery_of_a_failed_event_retries_it(developer, webhook_secret, succeeded_event, broken_credit):
    assert receive(succeeded_event, webhook_secret).status == StripeEvent.Status.FAILED

    again = receive(succeeded_event, webhook_secret)

    assert again.status == StripeEvent.Status.PROCESSED
    assert StripeEvent.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind=TransactionKind.TOPUP).count() == 1
    assert available(developer) == 10 * USD


def test_ignored_events_cannot_be_replayed(webhook_secret, transactional_db):
    stored = receive(
        {"id": "evt_unknown", "object": "event", "type": "invoice.paid", "data": {"object": {}}}, webhook_secret
    )
    assert stored.status == StripeEvent.Status.IGNORED

    with pytest.raises(ApplicationError):
        stripe_event_replay(event=stored)


@requires_postgresql("for row locks (SQLite serialises writers)")
def test_concurrent_deliveries_of_one_payment_credit_once(developer, webhook_secret, succeeded_event):
    """Stripe may send the same payment twice at once, under two event ids: one credit."""
    events = [succeeded_event, {**succeeded_event, "id": succeeded_event["id"] + "_twin"}] * 3
    barrier = threading.Barrier(len(events))
    outcomes: list[str] = []

    def deliver_one(event: dict) -> None:
        try:
            barrier.wait()
            outcomes.append(receive(event, webhook_secret).status)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver_one, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count(StripeEvent.Status.PROCESSED) == len(events)
    assert StripeEvent.objects.count() == 2
    assert LedgerTransaction.objects.filter(kind=TransactionKind.TOPUP).count() == 1
    assert available(developer) == 10 * USD
