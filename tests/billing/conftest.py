from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from itertools import count

import pytest
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from billing import hooks
from billing.models import LedgerEntry, LedgerTransaction
from billing.selectors import cached_balances_mismatch, ledger_total
from billing.services import topup_credit
from tests.factories import make_user

# A fixed, timezone-aware clock: meters take `now` explicitly, so tests never sleep. Noon two days
# before today: in the past, and with --calendar=2027-01-01 or 2028-03-01 metering runs across a
# year's end or a 29 February.
T0 = datetime.combine(timezone.now().astimezone(UTC).date() - timedelta(days=2), time(12), tzinfo=UTC)
USD = 1_000_000

_keys = count(1)


@pytest.fixture
def renter(db) -> User:
    return make_user(email="renter@example.test")


@pytest.fixture
def provider(db) -> User:
    return make_user(email="provider@example.test", is_provider=True)


@pytest.fixture
def outsider(db) -> User:
    return make_user(email="outsider@example.test")


def fund(user: User, amount: int, *, key: str | None = None) -> LedgerTransaction:
    """A top-up as the Stripe webhook would credit it."""
    key = key or f"test-topup:{next(_keys)}"
    return topup_credit(user=user, amount=amount, reference_type="stripe_event", reference_id=key, idempotency_key=key)


def assert_ledger_consistent() -> None:
    """The invariants every test ends with: zero-sum overall and per transaction, caches right."""
    assert ledger_total() == 0
    unbalanced = LedgerEntry.objects.values("transaction").annotate(total=Sum("amount")).exclude(total=0)
    assert list(unbalanced) == []
    assert list(cached_balances_mismatch()) == []


class HookRecorder:
    def __init__(self) -> None:
        self.closed: list[tuple[str, str, str]] = []
        self.warned: list[tuple[object, object]] = []

    def on_close(self, reference_type: str, reference_id: str, reason: str) -> None:
        self.closed.append((reference_type, reference_id, reason))

    def on_warn(self, user, meter) -> None:
        self.warned.append((user, meter))


@pytest.fixture
def billing_hooks(monkeypatch) -> HookRecorder:
    """Registers recording handlers in place of whatever higher apps registered."""
    monkeypatch.setattr(hooks, "_insufficient_funds_handlers", [])
    monkeypatch.setattr(hooks, "_low_balance_handlers", [])
    recorder = HookRecorder()
    hooks.register_insufficient_funds_handler(recorder.on_close)
    hooks.register_low_balance_handler(recorder.on_warn)
    return recorder


@pytest.fixture
def fund_user() -> Callable[..., LedgerTransaction]:
    return fund
