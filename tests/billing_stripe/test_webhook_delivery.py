"""The webhook, end to end: paid on localstripe, delivered signed to the live server, credited once."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request

import pytest

from billing.models import LedgerTransaction, StripeEvent, TopUp, TransactionKind
from billing.stripe_service import topup_create
from tests.billing_stripe.conftest import (
    USD,
    assert_ledger_consistent,
    available,
    deliver,
    localstripe_event,
    make_event,
    pay,
    post_webhook,
    sign,
)


@pytest.fixture
def paid(developer, stripe_client):
    """A $20 top-up, paid with the 4242 test card; returns (topup, its payment_intent.succeeded event)."""
    intent = topup_create(user=developer, amount_micros=20 * USD)
    confirmed = pay(stripe_client, intent.payment_intent_id)
    assert confirmed.status == "succeeded"
    event = localstripe_event(stripe_client, "payment_intent.succeeded", intent.payment_intent_id)
    return intent.topup, event


def test_paid_topup_is_credited_by_the_signed_webhook(live_server, developer, webhook_secret, paid):
    topup, event = paid
    assert available(developer) == 0  # paying alone grants nothing

    delivery = deliver(live_server, event, webhook_secret)

    assert delivery.status == 200
    assert delivery.body == {"status": "processed", "event": event["id"]}
    assert available(developer) == 20 * USD
    topup.refresh_from_db()
    assert topup.status == TopUp.Status.SUCCEEDED
    assert topup.credit.kind == TransactionKind.TOPUP
    assert topup.credit.idempotency_key == f"stripe:pi:{topup.stripe_payment_intent_id}:credit"
    stored = StripeEvent.objects.get()
    assert (stored.event_id, stored.type, stored.status, stored.attempts) == (
        event["id"],
        "payment_intent.succeeded",
        StripeEvent.Status.PROCESSED,
        1,
    )
    assert stored.payload == event  # the raw event, as delivered
    assert stored.processed_at is not None
    assert_ledger_consistent()


def test_duplicate_webhook_credits_once(live_server, developer, webhook_secret, paid):
    topup, event = paid

    first = deliver(live_server, event, webhook_secret)
    second = deliver(live_server, event, webhook_secret)

    assert (first.status, second.status) == (200, 200)
    assert second.body["status"] == "processed"
    assert StripeEvent.objects.count() == 1
    assert StripeEvent.objects.get().attempts == 1  # the duplicate was not processed again
    assert LedgerTransaction.objects.filter(kind=TransactionKind.TOPUP).count() == 1
    assert available(developer) == 20 * USD


def test_second_distinct_succeeded_event_for_the_same_intent_credits_once(live_server, developer, webhook_secret, paid):
    topup, event = paid
    again = {**event, "id": f"evt_test_{secrets.token_hex(8)}", "created": int(time.time())}

    deliver(live_server, event, webhook_secret)
    delivery = deliver(live_server, again, webhook_secret)

    assert delivery.status == 200
    assert StripeEvent.objects.filter(status=StripeEvent.Status.PROCESSED).count() == 2
    assert LedgerTransaction.objects.filter(kind=TransactionKind.TOPUP).count() == 1
    assert available(developer) == 20 * USD
    assert_ledger_consistent()


def test_tampered_body_is_rejected_and_nothing_is_stored(live_server, developer, webhook_secret, paid):
    topup, event = paid
    payload = json.dumps(event).encode()
    signature = sign(payload, webhook_secret)
    tampered = payload.replace(b'"amount": 2000', b'"amount": 2000000')
    assert tampered != payload

    delivery = post_webhook(live_server, tampered, signature)

    assert delivery.status == 400
    assert delivery.body == {"message": "Invalid Stripe signature."}
    assert StripeEvent.objects.count() == 0
    assert available(developer) == 0


def test_stale_timestamp_is_rejected(live_server, developer, webhook_secret, paid):
    topup, event = paid

    delivery = deliver(live_server, event, webhook_secret, timestamp=int(time.time()) - 301)

    assert delivery.status == 400
    assert StripeEvent.objects.count() == 0
    assert available(developer) == 0


def test_recent_timestamp_within_tolerance_is_accepted(live_server, developer, webhook_secret, paid):
    topup, event = paid

    delivery = deliver(live_server, event, webhook_secret, timestamp=int(time.time()) - 240)

    assert delivery.status == 200
    assert available(developer) == 20 * USD


def test_event_signed_with_another_secret_is_rejected(live_server, developer, webhook_secret, paid):
    topup, event = paid

    delivery = deliver(live_server, event, f"whsec_test_{secrets.token_hex(24)}")

    assert delivery.status == 400
    assert StripeEvent.objects.count() == 0
    assert available(developer) == 0


@pytest.mark.parametrize("signature", [None, "", "t=123", "v1=abc", "garbage"])
def test_missing_or_malformed_signature_is_rejected(live_server, webhook_secret, transactional_db, signature):
    payload = json.dumps(make_event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})).encode()

    delivery = post_webhook(live_server, payload, signature)

    assert delivery.status == 400
    assert StripeEvent.objects.count() == 0


def test_correctly_signed_garbage_is_rejected(live_server, webhook_secret, transactional_db):
    for payload in (b"not json", b"[1, 2]", json.dumps({"object": "event", "type": "x"}).encode()):
        delivery = post_webhook(live_server, payload, sign(payload, webhook_secret))

        assert delivery.status == 400
    assert StripeEvent.objects.count() == 0


def test_unknown_event_type_is_stored_and_ignored(live_server, webhook_secret, transactional_db):
    event = make_event("customer.created", {"id": "cus_123", "object": "customer"})

    delivery = deliver(live_server, event, webhook_secret)

    assert delivery.status == 200
    assert delivery.body["status"] == "ignored"
    stored = StripeEvent.objects.get()
    assert (stored.event_id, stored.status) == (event["id"], StripeEvent.Status.IGNORED)
    assert LedgerTransaction.objects.count() == 0


def test_payment_for_something_other_than_a_topup_is_ignored(live_server, webhook_secret, transactional_db):
    intent = {"id": "pi_not_ours", "object": "payment_intent", "amount": 500, "currency": "usd", "metadata": {}}

    delivery = deliver(live_server, make_event("payment_intent.succeeded", intent), webhook_secret)

    assert delivery.body["status"] == "ignored"
    assert LedgerTransaction.objects.count() == 0


def test_webhook_accepts_only_post(live_server, webhook_secret, transactional_db):
    delivery = post_webhook(live_server, b"", None, method="GET")

    assert delivery.status == 405
    assert StripeEvent.objects.count() == 0


def test_webhook_without_a_configured_secret_is_503(live_server, settings, transactional_db):
    settings.STRIPE_WEBHOOK_SECRET = None
    event = make_event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})
    payload = json.dumps(event).encode()

    delivery = post_webhook(live_server, payload, sign(payload, "whsec_anything"))

    assert delivery.status == 503
    assert "not configured" in delivery.body["message"]
    assert StripeEvent.objects.count() == 0


def test_localstripe_delivers_its_own_signed_webhook_to_the_live_server(
    live_server, developer, webhook_secret, stripe_client, localstripe_url
):
    """No hand-built event: localstripe signs and POSTs payment_intent.succeeded itself."""
    hook_id = f"test_{secrets.token_hex(4)}"

    def configure(events: list[str]) -> None:
        body = json.dumps(
            {"url": f"{live_server.url}/billing/stripe/webhook/", "secret": webhook_secret, "events": events}
        ).encode()
        request = urllib.request.Request(
            f"{localstripe_url}/_config/webhooks/{hook_id}", data=body, headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=5).close()

    time.sleep(1.5)  # let deliveries that earlier tests' payments scheduled pass, to no one
    configure(["payment_intent.succeeded"])
    try:
        intent = topup_create(user=developer, amount_micros=7 * USD)
        pay(stripe_client, intent.payment_intent_id)
        deadline = time.monotonic() + 20  # localstripe waits a second before it sends
        # The event's status is the last write of its processing (on SQLite the live server
        # shares this test's connection, so a half-done transaction would be visible).
        while not StripeEvent.objects.exclude(status=StripeEvent.Status.RECEIVED).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        configure(["none.none"])  # later tests deliver their own events

    assert available(developer) == 7 * USD
    stored = StripeEvent.objects.get()
    assert stored.type == "payment_intent.succeeded"
    assert stored.status == StripeEvent.Status.PROCESSED
    assert stored.payload["data"]["object"]["id"] == intent.payment_intent_id
