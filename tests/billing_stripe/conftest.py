"""Stripe tests run the official `stripe` SDK against a real localstripe server on loopback.

localstripe (PyPI) is a stateful fake of Stripe's API: PaymentIntents, PaymentMethods, charges,
refunds and the events they cause. Its own entry point (`python -m localstripe`) listens on every
interface and pickles its store to /tmp/localstripe.pickle after each write; the launcher below
runs the same aiohttp app on a socket we bind to 127.0.0.1 and keeps the store in memory, so
parallel runs cannot share state. Without localstripe the tests skip on a developer's machine,
but fail under CI=true: a CI run that silently skipped them would prove nothing.

Webhook deliveries are signed like Stripe signs them (`t=...,v1=HMAC-SHA256(secret, t.payload)`)
and POSTed to the live test server.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stripe

from accounts.models import User
from billing.models import LedgerEntry
from billing.selectors import cached_balances_mismatch, ledger_total, user_balances
from tests.factories import make_user
from tests.needs import unavailable

USD = 1_000_000
CARD_VISA = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
CARD_DECLINED = {"number": "4000000000000341", "exp_month": 12, "exp_year": 2030, "cvc": "123"}

# Runs localstripe's aiohttp app on the listening socket inherited as file descriptor argv[1].
_LAUNCHER = """
import socket, sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None  # in memory only: no shared /tmp pickle
web.run_app(server.app, sock=socket.socket(fileno=int(sys.argv[1])), print=None)
"""
START_TIMEOUT_SECONDS = 30


def _answers(base_url: str) -> bool:
    request = urllib.request.Request(f"{base_url}/v1/events", headers={"Authorization": "Bearer sk_test_ping"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory) -> Iterator[str]:
    """A localstripe server for the session, on a free loopback port; stopped after."""
    try:
        import localstripe  # noqa: F401
    except ImportError:
        unavailable("localstripe is not installed: pip install -r requirements/test.txt")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port meanwhile
    port = listener.getsockname()[1]
    log_path: Path = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(listener.fileno())],
            pass_fds=[listener.fileno()],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    listener.close()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-2000:]
                unavailable(f"localstripe did not start (exit code {process.poll()}): {output}")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def webhook_secret(settings) -> str:
    secret = f"whsec_test_{secrets.token_hex(24)}"
    settings.STRIPE_WEBHOOK_SECRET = secret
    return secret


@pytest.fixture
def stripe_settings(settings, localstripe_url, webhook_secret) -> None:
    """Keys made up at run time: localstripe accepts any `sk_` key."""
    settings.STRIPE_SECRET_KEY = f"sk_test_{secrets.token_hex(12)}"
    settings.STRIPE_PUBLISHABLE_KEY = f"pk_test_{secrets.token_hex(12)}"
    settings.STRIPE_API_BASE = localstripe_url
    # Each test starts from an empty Stripe, as it starts from an empty database.
    request = urllib.request.Request(f"{localstripe_url}/_config/data", method="DELETE")
    urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture
def stripe_client(settings, stripe_settings) -> stripe.StripeClient:
    """The SDK as the customer's browser (Stripe.js) would drive it, against localstripe."""
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}, max_network_retries=0
    )


@pytest.fixture
def developer(transactional_db) -> User:
    return make_user(email="developer@example.test", is_developer=True)


@pytest.fixture
def outsider(transactional_db) -> User:
    return make_user(email="outsider@example.test")


# --- Paying on localstripe -----------------------------------------------------------------------
def pay(client: stripe.StripeClient, payment_intent_id: str, card: dict = CARD_VISA) -> stripe.PaymentIntent:
    """What Stripe.js does on the pay page: attach a card and confirm."""
    method = client.v1.payment_methods.create(params={"type": "card", "card": dict(card)})
    client.v1.payment_intents.update(payment_intent_id, params={"payment_method": method.id})
    return client.v1.payment_intents.confirm(payment_intent_id)


def localstripe_event(client: stripe.StripeClient, event_type: str, object_id: str) -> dict[str, Any]:
    """The event localstripe itself recorded for this object, as Stripe would send it."""
    events = client.v1.events.list(params={"type": event_type, "limit": 100})
    matches = [event.to_dict() for event in events.data if event.data.object.id == object_id]
    assert len(matches) == 1, f"expected one {event_type} for {object_id}, got {len(matches)}"
    return matches[0]


def charge_of(client: stripe.StripeClient, payment_intent_id: str) -> dict[str, Any]:
    intent = client.v1.payment_intents.retrieve(payment_intent_id)
    charge_id = intent.latest_charge if isinstance(intent.latest_charge, str) else intent.latest_charge.id
    return client.v1.charges.retrieve(charge_id).to_dict()


def make_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """An event in Stripe's shape around a real object, for events localstripe does not emit."""
    return {
        "id": event_id or f"evt_test_{secrets.token_hex(8)}",
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }


# --- Delivering webhooks to the live server ------------------------------------------------------
@dataclass
class Delivery:
    status: int
    body: dict[str, Any]


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, timestamp=timestamp)


def post_webhook(live_server, payload: bytes, signature: str | None, *, method: str = "POST") -> Delivery:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    request = urllib.request.Request(
        f"{live_server.url}/billing/stripe/webhook/",
        data=payload if method == "POST" else None,
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Delivery(response.status, json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        return Delivery(exc.code, json.loads(exc.read() or b"{}"))


def deliver(live_server, event: dict[str, Any], secret: str, *, timestamp: int | None = None) -> Delivery:
    payload = json.dumps(event).encode()
    return post_webhook(live_server, payload, sign(payload, secret, timestamp=timestamp))


# --- Assertions ----------------------------------------------------------------------------------
def available(user: User) -> int:
    return user_balances(user=user).available


def debt(user: User) -> int:
    return user_balances(user=user).debt


def assert_ledger_consistent() -> None:
    assert ledger_total() == 0
    assert list(cached_balances_mismatch()) == []
    for transaction_id in LedgerEntry.objects.values_list("transaction", flat=True).distinct():
        assert sum(LedgerEntry.objects.filter(transaction=transaction_id).values_list("amount", flat=True)) == 0
