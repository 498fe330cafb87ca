"""Usage metering and settlement: per-second accrual at a locked hourly price.

A rental opens a meter with a hold on the renter's credits. Every hour a beat task settles what
accrued into the provider's pending earnings (less the platform fee), in batches: one database
transaction per batch, with bulk writes, so 10,000 rentals settle in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from billing import hooks
from billing.models import (
    AccountKind,
    Hold,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    TransactionKind,
    UsageMeter,
)
from billing.services import fee_for, account_get, hold_capture, hold_place, hold_release, transaction_post
from spheron_web.errors import ApplicationError

SECONDS_PER_HOUR = 3600


def fee_rate_for(mode: str) -> Decimal:
    """Platform fee by rental mode: fizz (5% protocol + 2% gateway) or provider."""
    return settings.PLATFORM_FEE_FIZZ if mode == "fizz" else settings.PLATFORM_FEE_PROVIDER


def meter_accrued(meter: UsageMeter, *, now: datetime) -> int:
    """What the rental has cost from its start until `now` (or its close), rounded down once."""
    end = min(now, meter.closed_at) if meter.closed_at else now
    seconds = int((end - meter.started_at).total_seconds()) - meter.excluded_seconds
    if seconds <= 0:
        return 0
    return meter.price_per_hour * seconds // SECONDS_PER_HOUR


@transaction.atomic
def meter_open(
    *,
    renter: User,
    payee: User,
    price_per_hour: int,
    fee_rate: Decimal,
    hold_amount: int,
    reference_type: str,
    reference_id: str,
    started_at: datetime | None = None,
) -> UsageMeter:
    """Place a hold for `hold_amount` and start metering at the locked `price_per_hour`."""
    if price_per_hour < 0:
        raise ApplicationError("A price cannot be negative.", {"field": "price_per_hour"})
    existing = UsageMeter.objects.filter(reference_type=reference_type, reference_id=str(reference_id)).first()
    if existing is not None:
        return existing
    hold = hold_place(user=renter, amount=hold_amount, reference_type=reference_type, reference_id=reference_id)
    return UsageMeter.objects.create(
        hold=hold,
        renter=renter,
        payee=payee,
        reference_type=reference_type,
        reference_id=str(reference_id),
        price_per_hour=price_per_hour,
        fee_rate=fee_rate,
        started_at=started_at or timezone.now(),
    )


@dataclass
class SettleResult:
    meters: int = 0
    charged: int = 0
    transactions: int = 0
    entries: int = 0
    rows_written: int = 0
    short: list[int] = field(default_factory=list)  # meters whose hold cannot cover the next hour


def _accounts_for(kind: str, users: set[int]) -> dict[int, LedgerAccount]:
    """One account of `kind` per user, created in bulk where missing."""
    found = {a.user_id: a for a in LedgerAccount.objects.filter(kind=kind, user_id__in=users)}
    missing = users - found.keys()
    if missing:
        LedgerAccount.objects.bulk_create(
            [LedgerAccount(kind=kind, user_id=user_id) for user_id in missing], ignore_conflicts=True
        )
        found.update({a.user_id: a for a in LedgerAccount.objects.filter(kind=kind, user_id__in=missing)})
    return found


@transaction.atomic
def usage_settle_batch(*, meter_ids: list[int], now: datetime) -> SettleResult:
    """Capture what each meter accrued since its last settlement, all in one transaction."""
    result = SettleResult()
    meters = list(UsageMeter.objects.select_for_update().filter(id__in=meter_ids).order_by("id"))
    holds = {
        h.id: h for h in Hold.objects.select_for_update().filter(id__in=[m.hold_id for m in meters]).order_by("id")
    }
    charges: list[tuple[UsageMeter, Hold, int, int]] = []
    for meter in meters:
        hold = holds[meter.hold_id]
        due = meter_accrued(meter, now=now) - meter.charged
        amount = min(due, hold.remaining) if hold.status == Hold.Status.ACTIVE else 0
        if amount > 0:
            charges.append((meter, hold, amount, fee_for(amount, meter.fee_rate)))
        if meter.closed_at is None and hold.remaining - max(amount, 0) < meter.price_per_hour:
            result.short.append(meter.id)
    result.meters = len(meters)
    if charges:
        reserved = _accounts_for(AccountKind.USER_RESERVED, {m.renter_id for m, *_ in charges})
        pending = _accounts_for(AccountKind.PROVIDER_PENDING, {m.payee_id for m, *_ in charges})
        fees = account_get(kind=AccountKind.PLATFORM_FEES)
        account_ids = sorted({a.id for a in reserved.values()} | {a.id for a in pending.values()} | {fees.id})
        accounts = {
            a.id: a for a in LedgerAccount.objects.select_for_update().filter(id__in=account_ids).order_by("id")
        }

        txns = LedgerTransaction.objects.bulk_create(
            [
                LedgerTransaction(
                    kind=TransactionKind.HOLD_CAPTURE,
                    reference_type=meter.reference_type,
                    reference_id=meter.reference_id,
                    idempotency_key=f"meter:{meter.id}:charged:{meter.charged + amount}",
                    memo=f"Usage until {now:%Y-%m-%d %H:%M:%S} UTC",
                )
                for meter, _hold, amount, _fee_amount in charges
            ]
        )
        entries = []
        for txn, (meter, hold, amount, fee) in zip(txns, charges, strict=True):
            lines = [(reserved[meter.renter_id].id, -amount), (pending[meter.payee_id].id, amount - fee)]
            if fee:
                lines.append((fees.id, fee))
            for account_id, value in lines:
                if value:
                    entries.append(LedgerEntry(transaction=txn, account_id=account_id, amount=value))
                    accounts[account_id].balance += value
            meter.charged += amount
            meter.settled_at = now
            hold.captured += amount
            result.charged += amount
        for account in accounts.values():
            if account.kind == AccountKind.USER_RESERVED and account.balance < 0:
                raise AssertionError(f"reserved balance of account {account.id} would go negative")
        LedgerEntry.objects.bulk_create(entries, batch_size=5000)
        LedgerAccount.objects.bulk_update(list(accounts.values()), ["balance"], batch_size=1000)
        Hold.objects.bulk_update([hold for _m, hold, *_ in charges], ["captured"], batch_size=1000)
        UsageMeter.objects.bulk_update([meter for meter, *_ in charges], ["charged", "settled_at"], batch_size=1000)
        result.transactions = len(txns)
        result.entries = len(entries)
        result.rows_written = len(txns) + len(entries) + len(accounts) + 2 * len(charges)
    return result


def open_meters() -> QuerySet[UsageMeter]:
    return UsageMeter.objects.filter(closed_at__isnull=True)


def usage_settle_all(*, now: datetime | None = None, batch_size: int = 1000) -> SettleResult:
    """The hourly run: settle every open meter in batches, then deal with holds running dry."""
    now = now or timezone.now()
    total = SettleResult()
    ids = list(open_meters().order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), batch_size):
        part = usage_settle_batch(meter_ids=ids[start : start + batch_size], now=now)
        total.meters += part.meters
        total.charged += part.charged
        total.transactions += part.transactions
        total.entries += part.entries
        total.rows_written += part.rows_written
        total.short += part.short
    for meter_id in total.short:
        meter_top_up_or_warn(meter_id=meter_id, now=now)
    return total


@transaction.atomic
def meter_top_up_or_warn(*, meter_id: int, now: datetime) -> str:
    """Make the hold cover the next hour from available credits; else warn once, then close.

    Returns what happened: "extended", "warned" or "closed".
    """
    meter = UsageMeter.objects.select_for_update().select_related("hold", "renter").get(id=meter_id)
    if meter.closed_at:
        return "closed"
    hold = Hold.objects.select_for_update().get(id=meter.hold_id)
    needed = meter.price_per_hour - hold.remaining
    available = account_get(kind=AccountKind.USER_AVAILABLE, user=meter.renter)
    balance = LedgerAccount.objects.select_for_update().get(id=available.id).balance
    if needed <= 0:
        return "extended"
    if balance >= needed:
        transaction_post(
            kind=TransactionKind.HOLD_PLACE,
            reference_type="hold",
            reference_id=str(hold.id),
            lines=[(available, -needed), (account_get(kind=AccountKind.USER_RESERVED, user=meter.renter), needed)],
            idempotency_key=f"hold:{hold.id}:extend:{hold.amount + needed}",
            memo="Hold extended to cover the next hour",
        )
        Hold.objects.filter(id=hold.id).update(amount=hold.amount + needed)
        if meter.low_balance_warned_at:
            UsageMeter.objects.filter(id=meter.id).update(low_balance_warned_at=None)
        return "extended"
    if meter.low_balance_warned_at is None or now - meter.low_balance_warned_at < timedelta(minutes=50):
        if meter.low_balance_warned_at is None:
            UsageMeter.objects.filter(id=meter.id).update(low_balance_warned_at=now)
            transaction.on_commit(lambda: hooks.low_balance(meter.renter, meter))
        return "warned"
    transaction.on_commit(lambda: hooks.insufficient_funds(meter.reference_type, meter.reference_id))
    meter_close(meter=meter, now=now, reason="insufficient_funds")
    return "closed"


@transaction.atomic
def meter_close(*, meter: UsageMeter, now: datetime | None = None, reason: str = "closed") -> UsageMeter:
    """Stop metering: settle up to `now`, then release what is left of the hold (idempotent)."""
    now = now or timezone.now()
    meter = UsageMeter.objects.select_for_update().get(id=meter.id)
    if meter.closed_at is None:
        meter.closed_at = now
        meter.save(update_fields=["closed_at"])
        hold = Hold.objects.get(id=meter.hold_id)
        due = min(meter_accrued(meter, now=now) - meter.charged, hold.remaining)
        if due > 0:
            hold_capture(
                hold=hold,
                amount=due,
                payee=meter.payee,
                fee_rate=meter.fee_rate,
                idempotency_key=f"meter:{meter.id}:charged:{meter.charged + due}",
                memo=f"Usage until close ({reason})",
            )
            UsageMeter.objects.filter(id=meter.id).update(charged=meter.charged + due, settled_at=now)
        hold_release(hold=hold)
        meter.refresh_from_db()
    return meter
