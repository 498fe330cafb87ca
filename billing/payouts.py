"""Provider earnings and payout requests: a provider asks for settled earnings to be paid out.

Paying on chain comes in a later issue, and it will post the ledger transaction (settled
earnings to the payouts clearing account) when the money actually leaves. Until then a request
earmarks part of the settled balance: the sum of open requests never exceeds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from accounts.models import User
from billing.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction, PayoutRequest
from billing.services import account_get
from billing.statements import NO_ACCOUNT, account_ids
from core.errors import ApplicationError
from core.money import format_usd

EARNINGS_KINDS = (AccountKind.PROVIDER_PENDING, AccountKind.PROVIDER_SETTLED)
EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58_decode(text: str) -> bytes | None:
    number = 0
    for char in text:
        digit = BASE58_ALPHABET.find(char)
        if digit < 0:
            return None
        number = number * 58 + digit
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading_zeros + body


def destination_clean(destination: str) -> str:
    """An EVM address (0x and 40 hex digits) or a Solana address (base58 of 32 bytes)."""
    value = (destination or "").strip()
    if not value:
        raise ApplicationError("Enter the address to pay to.", {"field": "destination"})
    if EVM_ADDRESS.match(value):
        if value.lower() == "0x" + "0" * 40:
            raise ApplicationError("The zero address cannot receive payouts.", {"field": "destination"})
        return value
    if 32 <= len(value) <= 44:
        decoded = _base58_decode(value)
        if decoded is not None and len(decoded) == 32:
            return value
    raise ApplicationError(
        "Enter an EVM address (0x followed by 40 hexadecimal digits) or a Solana address.",
        {"field": "destination"},
    )


@transaction.atomic
def payout_request_create(*, user: User, amount: int, destination: str) -> PayoutRequest:
    """Ask for `amount` micro-USD of settled earnings to be paid to `destination`."""
    if not user.is_provider:
        raise ApplicationError("Only providers have earnings to pay out.", status=403)
    destination = destination_clean(destination)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ApplicationError("Enter an amount above zero.", {"field": "amount"})
    settled_account = account_get(kind=AccountKind.PROVIDER_SETTLED, user=user)
    # The row lock serialises this user's requests, so two at once cannot both spend the same dollars.
    settled = LedgerAccount.objects.select_for_update().get(id=settled_account.id).balance
    requested = payouts_outstanding(user=user)
    payable = max(settled - requested, 0)
    if amount > payable:
        raise ApplicationError(
            f"You can request at most {format_usd(payable, places=6)}: your settled earnings"
            + (f" less {format_usd(requested, places=6)} already requested." if requested else "."),
            {"field": "amount", "payable_micros": payable},
            status=409,
        )
    return PayoutRequest.objects.create(user=user, amount=amount, destination=destination)


# --- Provider earnings ---------------------------------------------------------------------
@dataclass(frozen=True)
class Earnings:
    pending: int
    settled: int
    requested: int  # payout requests not yet paid or rejected

    @property
    def total(self) -> int:
        return self.pending + self.settled

    @property
    def payable(self) -> int:
        """Settled earnings not already asked for."""
        return max(self.settled - self.requested, 0)


def payouts_outstanding(*, user: User) -> int:
    return (
        PayoutRequest.objects.filter(user=user, status=PayoutRequest.Status.REQUESTED).aggregate(total=Sum("amount"))[
            "total"
        ]
        or 0
    )


def provider_earnings(*, user: User) -> Earnings:
    balances = dict(LedgerAccount.objects.filter(user=user, kind__in=EARNINGS_KINDS).values_list("kind", "balance"))
    return Earnings(
        pending=balances.get(AccountKind.PROVIDER_PENDING, 0),
        settled=balances.get(AccountKind.PROVIDER_SETTLED, 0),
        requested=payouts_outstanding(user=user),
    )


def earnings_transactions(*, user: User) -> QuerySet:
    """Transactions that credited or moved the provider's earnings, newest first: for each, what
    the renter was charged (gross), the platform fee, and the change of pending and settled."""
    ids = account_ids(user, EARNINGS_KINDS)
    pending = ids.get(AccountKind.PROVIDER_PENDING, NO_ACCOUNT)
    settled = ids.get(AccountKind.PROVIDER_SETTLED, NO_ACCOUNT)
    all_entries = LedgerEntry.objects.filter(transaction=OuterRef("pk")).order_by().values("transaction")
    gross = all_entries.filter(amount__gt=0).annotate(total=Sum("amount")).values("total")
    fee = all_entries.filter(account__kind=AccountKind.PLATFORM_FEES).annotate(total=Sum("amount")).values("total")
    return (
        LedgerTransaction.objects.filter(entries__account_id__in=[pending, settled])
        .annotate(
            pending=Coalesce(Sum("entries__amount", filter=Q(entries__account_id=pending)), 0),
            settled=Coalesce(Sum("entries__amount", filter=Q(entries__account_id=settled)), 0),
            gross=Coalesce(Subquery(gross), 0),
            fee=Coalesce(Subquery(fee), 0),
        )
        .values(
            "id", "kind", "created_at", "memo", "reference_type", "reference_id", "pending", "settled", "gross", "fee"
        )
        .order_by("-created_at", "-id")
    )
