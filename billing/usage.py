"""Usage metering and settlement: per-second accrual at a locked hourly price.

A rental opens a meter with a hold on the renter's credits. Every hour a beat task settles what
accrued into the provider's pending earnings (less the platform fee), in batches: one database
transaction per batch, with bulk writes, so 10,000 rentals settle in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model, QuerySet
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
from billing.services import (
    HoldSwap,
    _hold_capture,
    account_get,
    fee_for,
    hold_place,
    hold_release,
    hold_swaps,
    transaction_post,
)
from core.errors import ApplicationError
from core.money import HOURS_PER_MONTH

SECONDS_PER_HOUR = 3600
_BULK_CHUNK = 1000  # rows per UPDATE ... FROM (VALUES ...): 2,001 parameters, within SQLite's limit


def fee_rate_for(mode: str) -> Decimal:
    """Platform fee by rental mode: fizz (5% protocol + 2% gateway) or provider."""
    return settings.PLATFORM_FEE_FIZZ if mode == "fizz" else settings.PLATFORM_FEE_PROVIDER


RESERVATION_SECONDS = HOURS_PER_MONTH * SECONDS_PER_HOUR


def meter_accrued(meter: UsageMeter, *, now: datetime) -> int:
    """What the rental has cost from its start until `now` (or its close, or its pause: nothing
    accrues while it is paused), rounded down once. Reads only the meter's own columns, so a
    settlement of 10,000 meters makes no query for it."""
    end = min(t for t in (now, meter.closed_at, meter.paused_at) if t is not None)
    seconds = int((end - meter.started_at).total_seconds()) - meter.excluded_seconds
    if seconds <= 0:
        return 0
    if meter.reservation_total is not None:  # earned evenly over the month, never more
        return meter.reservation_total * min(seconds, RESERVATION_SECONDS) // RESERVATION_SECONDS
    return meter.price_per_hour * seconds // SECONDS_PER_HOUR


def reservation_price(price_per_hour: int) -> int:
    """A month (730 h) at the hourly price less the monthly discount, rounded once."""
    discount = settings.MONTHLY_RESERVATION_DISCOUNT
    return int((Decimal(price_per_hour * HOURS_PER_MONTH) * (1 - discount)).to_integral_value(ROUND_HALF_UP))


def meter_fee(meter: UsageMeter, amount: int) -> int:
    """The platform fee on charging `amount` more, rounded once over everything the meter charged.

    Rounding each settlement's fee on its own would drift (half a micro-dollar a settlement) from
    the fee on the rental as a whole; the difference of the fees on the running totals does not.
    """
    return fee_for(meter.charged + amount, meter.fee_rate) - fee_for(meter.charged, meter.fee_rate)


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


def meter_open_swapping(
    *,
    hold: Hold,
    payee_id: int,
    price_per_hour: int,
    fee_rate: Decimal,
    hold_amount: int,
    reference_type: str,
    reference_id: str,
    started_at: datetime,
) -> UsageMeter:
    """`meter_open` whose hold replaces `hold` (the renter's) in one ledger posting (`hold_swap`):
    a deployment's worst-case hold becomes its lease's hold at the locked price.

    No look-up of an existing meter first: a repeated call finds `hold` closed and raises, and a
    meter's reference is unique. A batch of one (`meters_open_swapping`); no savepoint: see `hold_swaps`.
    """
    (result,) = meters_open_swapping(
        [
            MeterSwap(
                hold_id=hold.id, payee_id=payee_id, price_per_hour=price_per_hour, fee_rate=fee_rate,
                hold_amount=hold_amount, reference_type=reference_type, reference_id=str(reference_id),
                started_at=started_at,
            )
        ]
    )  # fmt: skip
    if isinstance(result, ApplicationError):
        raise result
    return result


@dataclass(frozen=True)
class MeterSwap:
    """One meter of `meters_open_swapping`: the arguments of `meter_open_swapping`."""

    hold_id: int
    payee_id: int
    price_per_hour: int
    fee_rate: Decimal
    hold_amount: int
    reference_type: str
    reference_id: str
    started_at: datetime


def meters_open_swapping(items: list[MeterSwap]) -> list[UsageMeter | ApplicationError]:
    """`meter_open_swapping` for many rentals at once (the matchmaker's batches): the holds are
    swapped by `hold_swaps` and the meters written in one INSERT. Returns, in order, each meter or
    the refusal for which nothing was written. No savepoint: see `hold_swaps`."""
    for item in items:
        if item.price_per_hour < 0:
            raise ApplicationError("A price cannot be negative.", {"field": "price_per_hour"})
    holds = hold_swaps(
        [HoldSwap(item.hold_id, item.hold_amount, item.reference_type, str(item.reference_id)) for item in items]
    )
    opened = [n for n, hold in enumerate(holds) if isinstance(hold, Hold)]
    meters = UsageMeter.objects.bulk_create(
        [
            UsageMeter(
                hold=holds[n],
                renter_id=holds[n].user_id,
                payee_id=items[n].payee_id,
                reference_type=items[n].reference_type,
                reference_id=str(items[n].reference_id),
                price_per_hour=items[n].price_per_hour,
                fee_rate=items[n].fee_rate,
                started_at=items[n].started_at,
            )
            for n in opened
        ]
    )
    results: list[UsageMeter | ApplicationError] = list(holds)
    for n, meter in zip(opened, meters, strict=True):
        results[n] = meter
    return results


@transaction.atomic
def reservation_open(
    *,
    renter: User,
    payee: User,
    price_per_hour: int,
    fee_rate: Decimal,
    reference_type: str,
    reference_id: str,
    started_at: datetime | None = None,
) -> UsageMeter:
    """A monthly reservation: the discounted month leaves the renter's credits up front."""
    existing = UsageMeter.objects.filter(reference_type=reference_type, reference_id=str(reference_id)).first()
    if existing is not None:
        return existing
    total = reservation_price(price_per_hour)
    if total <= 0:
        raise ApplicationError("A reservation must cost something.", {"field": "price_per_hour"})
    hold = hold_place(user=renter, amount=total, reference_type=reference_type, reference_id=reference_id)
    discount = settings.MONTHLY_RESERVATION_DISCOUNT
    LedgerTransaction.objects.filter(idempotency_key=f"hold:{hold.id}:place").update(
        memo=f"Monthly reservation charged up front ({discount * 100:.0f}% off); unused days are refunded"
    )
    return UsageMeter.objects.create(
        hold=hold,
        renter=renter,
        payee=payee,
        reference_type=reference_type,
        reference_id=str(reference_id),
        mode=UsageMeter.Mode.MONTHLY,
        price_per_hour=price_per_hour,
        reservation_total=total,
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
    expired: list[int] = field(default_factory=list)  # monthly reservations that reached their end


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


def _add_in_bulk(model: type[Model], field_name: str, deltas: dict[int, int], *, also: dict | None = None) -> None:
    """UPDATE many rows at once: `field += delta` per row id, and `also` (the same values for every row).

    Django's bulk_update builds a CASE WHEN expression per row in Python: for 10,000 meters that
    cost seconds of CPU. One `UPDATE ... FROM (VALUES ...)` per chunk costs milliseconds and adds
    to the locked rows' current values (PostgreSQL, and SQLite since 3.33; VALUES columns are
    named column1, column2 in both).
    """
    if not deltas:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    column = quote(model._meta.get_field(field_name).column)
    also = also or {}
    assignments = "".join(f", {quote(model._meta.get_field(name).column)} = %s" for name in also)
    fixed = [model._meta.get_field(name).get_db_prep_save(value, connection) for name, value in also.items()]
    items = list(deltas.items())
    with connection.cursor() as cursor:
        for start in range(0, len(items), _BULK_CHUNK):
            chunk = items[start : start + _BULK_CHUNK]
            cursor.execute(
                f"UPDATE {table} SET {column} = {table}.{column} + CAST(v.column2 AS BIGINT){assignments} "
                f"FROM (VALUES {', '.join(['(%s, %s)'] * len(chunk))}) AS v WHERE {table}.id = v.column1",
                [*fixed, *(value for pair in chunk for value in pair)],
            )


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
            charges.append((meter, hold, amount, meter_fee(meter, amount)))
        if meter.closed_at is not None:
            continue
        if meter.reservation_total is not None:
            if meter_accrued(meter, now=now) >= meter.reservation_total:
                result.expired.append(meter.id)
        elif meter.paused_at is None and hold.remaining - max(amount, 0) < meter.price_per_hour:
            # A paused meter costs nothing in the next hour: no top-up, no warning, no close.
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
        balance_changes: dict[int, int] = {}
        for entry in entries:
            balance_changes[entry.account_id] = balance_changes.get(entry.account_id, 0) + entry.amount
        _add_in_bulk(LedgerAccount, "balance", balance_changes)
        _add_in_bulk(Hold, "captured", {hold.id: amount for _m, hold, amount, _f in charges})
        _add_in_bulk(
            UsageMeter,
            "charged",
            {meter.id: amount for meter, _h, amount, _f in charges},
            also={"settled_at": now},
        )
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
        total.expired += part.expired
    for meter_id in total.expired:
        meter_expire(meter_id=meter_id, now=now)
    for meter_id in total.short:
        _outcome, backlog, capture = _meter_top_up_or_warn(meter_id=meter_id, now=now)
        if capture is not None:
            entries = capture.entries.count()
            total.charged += backlog
            total.transactions += 1
            total.entries += entries
            total.rows_written += 1 + 2 * entries + 2  # transaction, entries and their balances, hold, meter
    return total


def _lock_meter_accounts(meter: UsageMeter) -> tuple[LedgerAccount, LedgerAccount, LedgerAccount, LedgerAccount]:
    """Lock every account a meter's postings touch, in one statement and in id order.

    transaction_post locks in id order too, but a capture (reserved, earnings, fees) followed by a
    release (reserved, available) in one transaction would take `available` after the others, the
    opposite order to a hold being placed for the same renter: a deadlock. Taking them all first
    keeps one global order, the one a settlement batch uses.
    """
    accounts = (
        account_get(kind=AccountKind.USER_AVAILABLE, user=meter.renter),
        account_get(kind=AccountKind.USER_RESERVED, user=meter.renter),
        account_get(kind=AccountKind.PROVIDER_PENDING, user=meter.payee),
        account_get(kind=AccountKind.PLATFORM_FEES),
    )
    locked = {
        a.id: a
        for a in LedgerAccount.objects.select_for_update().filter(id__in=[a.id for a in accounts]).order_by("id")
    }
    return tuple(locked[a.id] for a in accounts)  # type: ignore[return-value]


@transaction.atomic
def meter_top_up_or_warn(*, meter_id: int, now: datetime) -> str:
    """Make the hold cover the next hour from available credits; else warn once, then close.

    Usage the hold could not cover when it was settled (a late run, a hold that ran dry while the
    renter was warned) is charged here too once the credits are there, so that everything accrued
    until `now` is settled by one run and a second run at the same `now` charges nothing more.

    Returns what happened: "extended", "warned" or "closed".
    """
    return _meter_top_up_or_warn(meter_id=meter_id, now=now)[0]


@transaction.atomic
def _meter_top_up_or_warn(*, meter_id: int, now: datetime) -> tuple[str, int, LedgerTransaction | None]:
    """meter_top_up_or_warn, and the backlog it charged with the capture that charged it."""
    # of=("self",): FOR UPDATE on the joined user rows too would block every insert that references
    # those users (a new hold, a new account) and deadlock with them.
    meter = UsageMeter.objects.select_for_update(of=("self",)).select_related("renter", "payee").get(id=meter_id)
    if meter.closed_at:
        return "closed", 0, None
    hold = Hold.objects.select_for_update().get(id=meter.hold_id)
    active = hold.status == Hold.Status.ACTIVE
    backlog = max(0, meter_accrued(meter, now=now) - meter.charged)
    next_hour = 0 if meter.paused_at else meter.price_per_hour  # a paused meter accrues nothing
    needed = next_hour + backlog - hold.remaining
    if active and needed <= 0 and not backlog:
        return "extended", 0, None
    available, reserved, *_ = _lock_meter_accounts(meter)
    # A closed hold (released by hand) can never be charged again: refilling it would strand the credits.
    if active and available.balance >= needed:
        if needed > 0:
            transaction_post(
                kind=TransactionKind.HOLD_PLACE,
                reference_type="hold",
                reference_id=str(hold.id),
                lines=[(available, -needed), (reserved, needed)],
                idempotency_key=f"hold:{hold.id}:extend:{hold.amount + needed}",
                memo="Hold extended to cover the next hour",
            )
            Hold.objects.filter(id=hold.id).update(amount=hold.amount + needed)
        capture = None
        if backlog:
            capture = _hold_capture(
                hold=hold,
                amount=backlog,
                payee=meter.payee,
                fee=meter_fee(meter, backlog),
                idempotency_key=f"meter:{meter.id}:charged:{meter.charged + backlog}",
                memo=f"Usage until {now:%Y-%m-%d %H:%M:%S} UTC",
            )
            UsageMeter.objects.filter(id=meter.id).update(charged=meter.charged + backlog, settled_at=now)
        if meter.low_balance_warned_at:
            UsageMeter.objects.filter(id=meter.id).update(low_balance_warned_at=None)
        return "extended", backlog, capture
    if meter.low_balance_warned_at is None or now - meter.low_balance_warned_at < timedelta(minutes=50):
        if meter.low_balance_warned_at is None:
            UsageMeter.objects.filter(id=meter.id).update(low_balance_warned_at=now)
            transaction.on_commit(lambda: hooks.low_balance(meter.renter, meter))
        return "warned", 0, None
    transaction.on_commit(lambda: hooks.insufficient_funds(meter.reference_type, meter.reference_id))
    meter_close(meter=meter, now=now, reason="insufficient funds")
    return "closed", 0, None


def _give_back_after(meter: UsageMeter, *, at: datetime) -> LedgerTransaction | None:
    """A settlement that ran after the node's last heartbeat but before the node was marked silent
    charged time the meter, now paused at `at`, no longer counts: give the difference
    back to the renter's credits, taken from the provider's pending earnings and the platform's fee
    (the fee on the rental as a whole stays rounded once). Once per meter and amount."""
    meter.refresh_from_db()
    accrued = meter_accrued(meter, now=at)
    over = meter.charged - accrued
    if over <= 0:
        return None
    fee_back = fee_for(meter.charged, meter.fee_rate) - fee_for(accrued, meter.fee_rate)
    available, _reserved, pending, fees = _lock_meter_accounts(meter)
    lines = [(available, over), (pending, -(over - fee_back))]
    if fee_back:
        lines.append((fees, -fee_back))
    txn = transaction_post(
        kind=TransactionKind.REFUND,
        reference_type=meter.reference_type,
        reference_id=meter.reference_id,
        lines=lines,
        idempotency_key=f"meter:{meter.id}:given-back-to:{accrued}",
        memo=f"Usage after {at:%Y-%m-%d %H:%M:%S} UTC (the node's last heartbeat) given back",
    )
    UsageMeter.objects.filter(id=meter.id).update(charged=accrued)
    meter.charged = accrued
    return txn


@transaction.atomic
def meter_close(*, meter: UsageMeter, now: datetime | None = None, reason: str = "closed") -> UsageMeter:
    """Stop metering: settle up to `now`, then release what is left of the hold (idempotent).
    `reason`: why, in words for the renter's transactions ("closed by the renter")."""
    meter = UsageMeter.objects.select_for_update().get(id=meter.id)
    # The clock is read once the meter is ours: a settlement that committed while we waited used
    # an earlier `now`, so the close never lands before what was already charged.
    now = now or timezone.now()
    if meter.closed_at is None:
        meter.closed_at = now
        meter.save(update_fields=["closed_at"])
        hold = Hold.objects.select_for_update().get(id=meter.hold_id)
        _lock_meter_accounts(meter)
        due = min(meter_accrued(meter, now=now) - meter.charged, hold.remaining)
        if due > 0 and hold.status == Hold.Status.ACTIVE:
            _hold_capture(
                hold=hold,
                amount=due,
                payee=meter.payee,
                fee=meter_fee(meter, due),
                idempotency_key=f"meter:{meter.id}:charged:{meter.charged + due}",
                memo=f"Usage until close: {reason}",
            )
            UsageMeter.objects.filter(id=meter.id).update(charged=meter.charged + due, settled_at=now)
        hold_release(hold=hold)
        meter.refresh_from_db()
    return meter


@transaction.atomic
def meter_pause(*, meter_id: int, at: datetime) -> UsageMeter:
    """Stop accruing from `at` (the last heartbeat of the rental's node, which went silent) until
    `meter_resume`: a settlement meanwhile charges nothing after `at`, and neither does a close;
    what a settlement charged after `at` before the pause was known is given back.

    Idempotent: a meter already paused keeps its pause (the silence began then), and a closed
    meter is left as it is. A pause before the start counts from the start."""
    meter = UsageMeter.objects.select_for_update().get(id=meter_id)
    if meter.paused_at is None and meter.closed_at is None:
        meter.paused_at = max(at, meter.started_at)
        meter.save(update_fields=["paused_at"])
        if meter.charged:
            _give_back_after(meter, at=meter.paused_at)
    return meter


@transaction.atomic
def meter_resume(*, meter_id: int, at: datetime) -> UsageMeter:
    """Accrue again from `at`: the paused time is added to `excluded_seconds`, so it is never
    charged, and the cost goes on from exactly what it was at the pause (the gap is counted in
    the whole seconds the accrual counts, so no second is charged or forgiven by rounding).

    A monthly reservation's month is likewise extended by the pause (its accrual and
    `meter_expire` both count `excluded_seconds`). Idempotent; a meter that is not paused, or
    was closed while paused (its charge ended at the pause), is left as it is."""
    meter = UsageMeter.objects.select_for_update().get(id=meter_id)
    if meter.paused_at is None or meter.closed_at is not None:
        return meter
    resumed = max(at, meter.paused_at)
    gap = int((resumed - meter.started_at).total_seconds()) - int((meter.paused_at - meter.started_at).total_seconds())
    meter.excluded_seconds += gap
    meter.paused_at = None
    meter.save(update_fields=["excluded_seconds", "paused_at"])
    return meter


@transaction.atomic
def meter_expire(*, meter_id: int, now: datetime) -> None:
    """A monthly reservation is over: close it (everything is earned) and tell the rental."""
    meter = UsageMeter.objects.get(id=meter_id)
    if meter.closed_at is not None:
        return
    end = meter.started_at + timedelta(seconds=RESERVATION_SECONDS + meter.excluded_seconds)
    meter_close(meter=meter, now=min(now, end), reason="the reservation's term is over")
    transaction.on_commit(lambda: hooks.rental_expired(meter.reference_type, meter.reference_id))
