"""Provider earnings mature: usage captured into pending earnings becomes settled (payable)
once it is older than EARNINGS_HOLD_HOURS, the window in which a renter's payment can still be
reversed. An hourly task moves what matured, one ledger transaction per provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from billing.models import AccountKind, LedgerAccount, LedgerEntry, TransactionKind
from billing.services import account_get, transaction_post


@dataclass
class EarningsSettleResult:
    providers: int = 0
    settled: int = 0


def _settleable(account: LedgerAccount, *, cutoff: datetime) -> tuple[int, int]:
    """(amount that may move now, amount moved before) for one pending-earnings account."""
    totals = LedgerEntry.objects.filter(account=account).aggregate(
        matured=Sum("amount", filter=Q(amount__gt=0, transaction__created_at__lte=cutoff)),
        moved=Sum("amount", filter=Q(amount__lt=0, transaction__kind=TransactionKind.SETTLEMENT)),
        other_debits=Sum("amount", filter=Q(amount__lt=0) & ~Q(transaction__kind=TransactionKind.SETTLEMENT)),
    )
    matured = totals["matured"] or 0
    moved = -(totals["moved"] or 0)
    other_debits = -(totals["other_debits"] or 0)
    # Reversed charges come out of the oldest earnings first: conservative, never too much.
    return max(min(matured - moved - other_debits, account.balance), 0), moved


@transaction.atomic
def earnings_settle_account(*, account_id: int, cutoff: datetime) -> int:
    account = LedgerAccount.objects.select_for_update().get(id=account_id)
    amount, moved = _settleable(account, cutoff=cutoff)
    if amount <= 0:
        return 0
    transaction_post(
        kind=TransactionKind.SETTLEMENT,
        reference_type="user",
        reference_id=str(account.user_id),
        lines=[(account, -amount), (account_get(kind=AccountKind.PROVIDER_SETTLED, user=account.user), amount)],
        # The cumulative total settled: a re-run (or a concurrent one) cannot move the same money twice.
        idempotency_key=f"earnings:{account.id}:settled:{moved + amount}",
        memo=f"Earnings up to {cutoff:%Y-%m-%d %H:%M} UTC settled",
    )
    return amount


def earnings_settle_due(*, now: datetime | None = None) -> EarningsSettleResult:
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.EARNINGS_HOLD_HOURS)
    result = EarningsSettleResult()
    account_ids = LedgerAccount.objects.filter(kind=AccountKind.PROVIDER_PENDING, balance__gt=0).values_list(
        "id", flat=True
    )
    for account_id in account_ids.iterator():
        amount = earnings_settle_account(account_id=account_id, cutoff=cutoff)
        if amount:
            result.providers += 1
            result.settled += amount
    return result
