"""Card auto-reload on a real localstripe: the card saved through a SetupIntent, an off-session
PaymentIntent under "autoreload:<user>:<attempt>", credited once (also when Stripe's webhook comes
after), refusals recorded and e-mailed, one reload in flight, and a reload before the settlement
would warn and close a rental for insufficient funds."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_service, tasks
from billing.autoreload import autoreload_run, autoreload_update
from billing.models import AutoReload, AutoReloadAttempt, TopUp, UsageMeter
from billing.selectors import user_balances
from core.errors import ApplicationError
from tests.billing_alerts.conftest import USD, fund, rent
from tests.billing_stripe.conftest import CARD_DECLINED, CARD_VISA, localstripe_event, sign


@contextmanager
def recording_proxy(upstream: str) -> Iterator[dict]:
    """An HTTP proxy in front of localstripe that records each request's Idempotency-Key; with
    state["drop"] set it reads a request and hangs up without an answer (a lost response)."""
    state: dict = {"keys": [], "drop": False}

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state["keys"].append((self.command, self.path, self.headers.get("Idempotency-Key")))
            if state["drop"]:
                self.close_connection = True
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(
                upstream + self.path, data=body or None, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    status, payload = answer.status, answer.read()
            except urllib.error.HTTPError as error:
                status, payload = error.code, error.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def save_card(client, renter_client, card=CARD_VISA) -> AutoReload:
    """What the browser does: POST to start, Stripe.js confirms the SetupIntent, Stripe returns us."""
    page = renter_client.post("/billing/auto-reload/card/")
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    setup_intent_id = page.context["client_secret"].split("_secret_")[0]
    method = client.v1.payment_methods.create(params={"type": "card", "card": dict(card)})
    client.v1.setup_intents.confirm(setup_intent_id, params={"payment_method": method.id})
    done = renter_client.get(f"/billing/auto-reload/card/done/?setup_intent={setup_intent_id}")
    assert done.status_code == 302
    return AutoReload.objects.get(user=page.wsgi_request.user)


@pytest.fixture
def saved(renter, renter_client, stripe_client, stripe_settings) -> AutoReload:
    reload = save_card(stripe_client, renter_client)
    assert reload.card_label == "visa ending 4242"
    return autoreload_update(user=reload.user, enabled=True, threshold=10 * USD, amount=25 * USD)


def test_saving_a_card_and_the_minimum(renter, renter_client, stripe_client, stripe_settings):
    with pytest.raises(ApplicationError, match="Save a card first"):
        autoreload_update(user=renter, enabled=True, threshold=10 * USD, amount=20 * USD)
    save_card(stripe_client, renter_client)
    with pytest.raises(ApplicationError, match="at least \\$20.00"):
        autoreload_update(user=renter, enabled=True, threshold=10 * USD, amount=19_990_000)
    answer = renter_client.post("/billing/auto-reload/", {"enabled": "on", "threshold": "5", "amount": "15"})
    assert answer.status_code == 400 and "at least $20.00" in answer.content.decode()
    # Another user's SetupIntent id is refused.
    bogus = renter_client.get("/billing/auto-reload/card/done/?setup_intent=seti_notyours")
    assert bogus.status_code == 302
    assert AutoReload.objects.get(user=renter).card_label == "visa ending 4242"


def test_reload_below_threshold_credits_once_even_with_the_webhook(renter, saved, stripe_client, webhook_secret):
    fund(renter, 8 * USD)
    attempt = autoreload_run(user_id=renter.id)
    assert attempt.status == "succeeded" and attempt.amount == 25 * USD
    assert user_balances(user=renter).available == 33 * USD
    intent = stripe_client.v1.payment_intents.retrieve(attempt.stripe_payment_intent_id)
    assert intent.status == "succeeded" and intent.customer == saved.stripe_customer_id
    assert intent.metadata["autoreload_attempt"] == str(attempt.id)
    assert TopUp.objects.get(id=attempt.topup_id).status == "succeeded"
    assert "We added $25.00" in mail.outbox[-1].subject

    # Stripe's own payment_intent.succeeded arrives later: the same credit, not a second one.
    event = localstripe_event(stripe_client, "payment_intent.succeeded", intent.id)
    payload = json.dumps(event).encode()
    stored = stripe_service.stripe_event_receive(payload=payload, signature=sign(payload, webhook_secret))
    assert stored.status == "processed"
    assert user_balances(user=renter).available == 33 * USD
    assert autoreload_run(user_id=renter.id) is None  # above the threshold now


def test_lost_answer_is_retried_under_the_same_key(renter, saved, stripe_client, settings):
    fund(renter, 5 * USD)
    with recording_proxy(settings.STRIPE_API_BASE) as proxy:
        settings.STRIPE_API_BASE = proxy["url"]
        proxy["drop"] = True
        attempt = autoreload_run(user_id=renter.id)
        assert attempt.status == "processing"
        assert autoreload_run(user_id=renter.id).id == attempt.id  # in flight: no second attempt
        proxy["drop"] = False
        done = autoreload_run(user_id=renter.id)
    assert done.id == attempt.id and done.status == "succeeded"
    keys = {key for method, path, key in proxy["keys"] if method == "POST" and path == "/v1/payment_intents"}
    assert keys == {f"autoreload:{renter.id}:{attempt.id}"}
    assert AutoReloadAttempt.objects.filter(user=renter).count() == 1
    assert user_balances(user=renter).available == 30 * USD
    with pytest.raises(IntegrityError), transaction.atomic():  # never two in flight, whoever writes them
        for _ in range(2):
            AutoReloadAttempt.objects.create(
                    user=renter, amount=USD, reason="x", created_at=timezone.now(),
                    topup=TopUp.objects.create(user=renter, amount=USD),
                )  # fmt: skip


def test_declined_card_is_recorded_mailed_and_not_retried_at_once(
    renter, renter_client, stripe_client, stripe_settings
):
    save_card(stripe_client, renter_client, card=CARD_DECLINED)
    autoreload_update(user=renter, enabled=True, threshold=10 * USD, amount=20 * USD)
    attempt = autoreload_run(user_id=renter.id)
    assert attempt.status == "failed" and "declined" in attempt.failure_message
    assert TopUp.objects.get(id=attempt.topup_id).status == "failed"
    assert user_balances(user=renter).available == 0
    assert "Auto-reload failed" in mail.outbox[-1].subject
    assert autoreload_run(user_id=renter.id) is None  # waits (or a change of settings)
    later = timezone.now() + timedelta(hours=7)
    second = autoreload_run(user_id=renter.id, now=later)
    assert second is not None and second.id != attempt.id
    page = renter_client.get("/billing/alerts/").content.decode()
    assert 'data-status="failed"' in page and "declined" in page


def test_reload_lands_before_the_settlement_closes_a_rental(renter, provider, saved, billing_close_recorder):
    # $2/h with an hour held; $0.50 available, above nothing: the threshold is $0.10, but the
    # next hour needs $2 more than the hold has left after 90 minutes.
    autoreload_update(user=renter, enabled=True, threshold=100_000, amount=20 * USD)
    fund(renter, 2_500_000)
    meter = rent(renter, provider, price=2 * USD, hold=2 * USD, started_at=timezone.now() - timedelta(minutes=90))
    tasks.settle_usage()
    meter.refresh_from_db()
    assert meter.closed_at is None and meter.low_balance_warned_at is None
    assert billing_close_recorder == []
    (attempt,) = AutoReloadAttempt.objects.filter(user=renter)
    assert attempt.status == "succeeded" and "next hour" in attempt.reason
    assert UsageMeter.objects.get(id=meter.id).hold.remaining >= 2 * USD


def test_without_auto_reload_the_same_rental_is_warned(renter, provider, billing_close_recorder):
    fund(renter, 2_500_000)
    meter = rent(renter, provider, price=2 * USD, hold=2 * USD, started_at=timezone.now() - timedelta(minutes=90))
    tasks.settle_usage()
    meter.refresh_from_db()
    assert meter.low_balance_warned_at is not None


@pytest.fixture
def billing_close_recorder(monkeypatch) -> list:
    from billing import hooks

    closed: list = []
    monkeypatch.setattr(hooks, "_insufficient_funds_handlers", [])
    monkeypatch.setattr(hooks, "_low_balance_handlers", [])
    hooks.register_insufficient_funds_handler(lambda *args: closed.append(args))
    return closed
