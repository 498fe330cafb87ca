from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from accounts.models import User
from billing.models import AccountKind, LedgerAccount, LedgerEntry, TransactionKind


@dataclass(frozen=True)
class Balances:
    available: int
    reserved: int
    debt: int
    earnings_pending: int
    earnings_settled: int

    def can_hold(self, amount: int) -> bool:
        """Whether a hold of `amount` micro-USD may be placed now, as hold_place decides: no debt
        and at least that much available credit."""
        return not self.debt and self.available >= amount


def user_balances(*, user: User) -> Balances:
    by_kind = dict(LedgerAccount.objects.filter(user=user).values_list("kind", "balance"))
    return Balances(
        available=by_kind.get(AccountKind.USER_AVAILABLE, 0),
        reserved=by_kind.get(AccountKind.USER_RESERVED, 0),
        debt=-by_kind.get(AccountKind.USER_DEBT, 0),
        earnings_pending=by_kind.get(AccountKind.PROVIDER_PENDING, 0),
        earnings_settled=by_kind.get(AccountKind.PROVIDER_SETTLED, 0),
    )


def ledger_total() -> int:
    """Sum of every entry: zero whenever the ledger is consistent."""
    return LedgerEntry.objects.aggregate(total=Sum("amount"))["total"] or 0


def cached_balances_mismatch() -> QuerySet[LedgerAccount]:
    """Accounts whose cached balance differs from the sum of their entries (should be none)."""
    return LedgerAccount.objects.annotate(entries_total=Coalesce(Sum("entries__amount"), 0)).exclude(
        balance=F("entries_total")
    )


# A provider's rental income in the ledger: what usage charges credited to pending earnings (net of
# the fee), less what was given back (usage after a node's last heartbeat, refunded by billing.usage)
# and charges an admin reversed. Settlements (pending → settled) and payouts move earnings, they
# are not income, and floor top-ups are counted on their own.
RENTAL = (
    Q(transaction__kind=TransactionKind.HOLD_CAPTURE)
    | Q(transaction__kind=TransactionKind.REFUND)
    | Q(transaction__kind=TransactionKind.REVERSAL, transaction__reverses__kind=TransactionKind.HOLD_CAPTURE)
)


def provider_rental_per_day(*, user: User, start: datetime, end: datetime) -> dict[date, int]:
    """{UTC day: micro-USD} of rental income credited to the user's pending earnings in [start,
    end), by the day of the ledger transaction; days without any are absent. One query."""
    return dict(
        LedgerEntry.objects.filter(
            RENTAL,
            account__user=user,
            account__kind=AccountKind.PROVIDER_PENDING,
            transaction__created_at__gte=start,
            transaction__created_at__lt=end,
        )
        .annotate(day=TruncDate("transaction__created_at", tzinfo=UTC))
        .values("day")
        .annotate(total=Sum("amount"))
        .values_list("day", "total")
    )
