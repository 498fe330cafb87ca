from __future__ import annotations

from dataclasses import dataclass

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce

from accounts.models import User
from billing.models import AccountKind, LedgerAccount, LedgerEntry


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
