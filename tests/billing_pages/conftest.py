"""Personas and ledger data for the billing pages and API tests.

Ledger rows are written through billing.services, as the product writes them; only their
timestamps are moved afterwards (created_at is set by the database), to place them on given days.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import count

import pytest
from django.test import Client

import billing
from accounts.models import User
from billing.models import Hold, LedgerTransaction, TopUp
from billing.services import hold_capture, hold_place, hold_release, topup_credit
from core.errors import ApplicationError
from tests.factories import make_user

USD = 1_000_000
_refs = count(1)


@pytest.fixture
def developer(db) -> User:
    return make_user(email="dev@example.test", name="Dana Developer")


@pytest.fixture
def outsider(db) -> User:
    return make_user(email="outsider@example.test")


@pytest.fixture
def provider(db) -> User:
    return make_user(email="host@example.test", is_provider=True, is_developer=False)


@pytest.fixture
def dev_client(developer) -> Client:
    client = Client()
    client.force_login(developer)
    return client


@pytest.fixture
def outsider_client(outsider) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


def backdate(txn: LedgerTransaction | None, when: datetime) -> None:
    if txn is not None:
        LedgerTransaction.objects.filter(id=txn.id).update(created_at=when)


def fund(user: User, micros: int, *, when: datetime | None = None, memo: str = "") -> LedgerTransaction:
    """A top-up as the Stripe webhook credits it."""
    ref = f"pi_test_{next(_refs)}"
    txn = topup_credit(
        user=user,
        amount=micros,
        reference_type="stripe_payment_intent",
        reference_id=ref,
        idempotency_key=f"test-topup:{ref}",
        memo=memo,
    )
    if when:
        backdate(txn, when)
    return txn


@dataclass
class Rental:
    hold: Hold
    place: LedgerTransaction
    captures: list[LedgerTransaction]
    release: LedgerTransaction | None


def rent(
    user: User,
    payee: User,
    *,
    hold: int,
    charges: list[tuple[int, datetime]],
    when: datetime,
    lease: str | None = None,
    release_at: datetime | None = None,
    fee_rate: Decimal = Decimal("0.07"),
) -> Rental:
    """A rental: a hold placed at `when`, usage charged from it, the rest released at `release_at`."""
    lease = lease or str(next(_refs))
    placed = hold_place(user=user, amount=hold, reference_type="lease", reference_id=lease)
    place_txn = LedgerTransaction.objects.get(idempotency_key=f"hold:{placed.id}:place")
    backdate(place_txn, when)
    captures = []
    for index, (amount, at) in enumerate(charges):
        txn = hold_capture(
            hold=placed,
            amount=amount,
            payee=payee,
            fee_rate=fee_rate,
            idempotency_key=f"test-capture:{lease}:{index}",
            memo=f"Usage of lease {lease}",
        )
        backdate(txn, at)
        captures.append(txn)
    release = None
    if release_at is not None:
        release = hold_release(hold=placed)
        backdate(release, release_at)
    return Rental(hold=placed, place=place_txn, captures=captures, release=release)


# --- A stand-in for billing.stripe_service (Stripe cannot be reached from these tests) --------
@dataclass(frozen=True)
class FakeIntent:
    topup: TopUp
    client_secret: str
    publishable_key: str
    payment_intent_id: str


class FakeStripeService:
    """topup_create with the agreed interface: $5..$10,000, 503 when not configured."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.error: ApplicationError | None = None

    def topup_create(self, *, user: User, amount_micros: int) -> FakeIntent:
        self.calls.append((user.id, amount_micros))
        if self.error is not None:
            raise self.error
        if not 5 * USD <= amount_micros <= 10_000 * USD:
            raise ApplicationError("A top-up must be between $5 and $10,000.", {"field": "amount"})
        topup = TopUp.objects.create(user=user, amount=amount_micros)
        return FakeIntent(
            topup=topup,
            client_secret=f"pi_fake_{topup.id}_secret_s3cr3t",
            publishable_key="pk_test_fake",
            payment_intent_id=f"pi_fake_{topup.id}",
        )


@pytest.fixture
def stripe_configured(settings) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_fake"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_fake"


@pytest.fixture
def stripe_not_configured(settings) -> None:
    settings.STRIPE_SECRET_KEY = None
    settings.STRIPE_PUBLISHABLE_KEY = None
    settings.STRIPE_WEBHOOK_SECRET = None


@pytest.fixture
def fake_stripe(monkeypatch) -> FakeStripeService:
    """Replaces billing.stripe_service.topup_create (Stripe cannot be reached from here). Patches
    the real module where it exists, so its other functions (the webhook) stay importable."""
    fake = FakeStripeService()
    try:
        module = importlib.import_module("billing.stripe_service")
    except ImportError:
        module = types.ModuleType("billing.stripe_service")
        monkeypatch.setitem(sys.modules, "billing.stripe_service", module)
        monkeypatch.setattr(billing, "stripe_service", module, raising=False)
    monkeypatch.setattr(module, "topup_create", fake.topup_create, raising=False)
    return fake
