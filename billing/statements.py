"""Reads behind the billing pages and API: transaction history, daily spend, monthly statements,
provider earnings. Everything is derived from ledger entries; amounts are integer micro-USD.

A developer's "funds" are their available, reserved and debt accounts together: placing or
releasing a hold moves money between the first two and nets to zero, so statements show what
came in (top-ups) and what went out (usage, refunds, disputes), not internal movements.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.http import Http404
from django.utils import timezone
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from accounts.models import User
from billing.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    TopUp,
    TransactionKind,
)
from billing.references import describe_references, transaction_description
from core import cursors
from core.errors import ApplicationError
from core.money import format_usd
from core.query import clean_query_value

FUNDS_KINDS = (AccountKind.USER_AVAILABLE, AccountKind.USER_RESERVED, AccountKind.USER_DEBT)
NO_ACCOUNT = -1  # an id no account has, so a user without an account matches nothing
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", re.ASCII)
# Dates a filter or cursor may name: years near 1 or 9999 overflow date arithmetic and time-zone
# conversion (a 500), and no ledger row is older than the service or far in the future.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2999, 12, 31)
KIND_LABELS = dict(TransactionKind.choices)


def signed_usd(micros: int) -> str:
    """For display: '+$25.00', '−$0.123456' (a true minus sign), '$0.00'."""
    if micros == 0:
        return "$0.00"
    return ("−" if micros < 0 else "+") + format_usd(abs(micros), places=6)


def balance_usd(micros: int) -> str:
    """For display: '$25.00', or '−$3.00' for a balance below zero (money owed)."""
    return ("−" if micros < 0 else "") + format_usd(abs(micros), places=6)


# --- Filters -------------------------------------------------------------------------------
class TransactionFilter(BaseModel):
    """Shared by the transactions page, its CSV export and GET /api/v1/billing/transactions."""

    kind: TransactionKind | None = Field(None, description="Transaction type, e.g. topup or hold_capture")
    date_from: date | None = Field(None, description="First day, YYYY-MM-DD (UTC), inclusive")
    date_to: date | None = Field(None, description="Last day, YYYY-MM-DD (UTC), inclusive")

    @field_validator("*", mode="before")
    @classmethod
    def _strict_strings(cls, value: Any, info: ValidationInfo) -> Any:
        value = clean_query_value(value)
        if isinstance(value, str):
            if info.field_name in ("date_from", "date_to") and not ISO_DATE.match(value):
                raise ValueError("must be a date written YYYY-MM-DD")
        elif value is not None and info.field_name in ("date_from", "date_to") and not isinstance(value, date):
            raise ValueError("must be a date written YYYY-MM-DD")  # not a timestamp or a number
        return value

    @field_validator("date_from", "date_to")
    @classmethod
    def _in_range(cls, value: date | None) -> date | None:
        if value is not None and not EARLIEST_DAY <= value <= LATEST_DAY:
            raise ValueError(f"must be between {EARLIEST_DAY.isoformat()} and {LATEST_DAY.isoformat()}")
        return value

    @field_validator("date_to")
    @classmethod
    def _not_before_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("date_from")
        if value is not None and start is not None and value < start:
            raise ValueError("must not be before date_from")
        return value

    def active(self) -> dict[str, str]:
        """The filters in use, as query-string values (for links, the CSV export and file names)."""
        return {key: str(value) for key, value in self.model_dump(exclude_none=True, mode="json").items()}


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- Transactions --------------------------------------------------------------------------
def account_ids(user: User, kinds: tuple[str, ...]) -> dict[str, int]:
    return dict(LedgerAccount.objects.filter(user=user, kind__in=kinds).values_list("kind", "id"))


def transaction_list(*, user: User, filters: TransactionFilter | None = None) -> QuerySet:
    """The user's transactions (touching their funds), newest first, each as a dict with the
    signed change of their available and reserved credits and of what they owe."""
    ids = account_ids(user, FUNDS_KINDS)
    available = ids.get(AccountKind.USER_AVAILABLE, NO_ACCOUNT)
    reserved = ids.get(AccountKind.USER_RESERVED, NO_ACCOUNT)
    debt = ids.get(AccountKind.USER_DEBT, NO_ACCOUNT)
    # filter() before annotate(): the sums run over this user's entries only.
    queryset = LedgerTransaction.objects.filter(entries__account_id__in=list(ids.values()) or [NO_ACCOUNT])
    filters = filters or TransactionFilter()
    if filters.kind:
        queryset = queryset.filter(kind=filters.kind)
    if filters.date_from:
        queryset = queryset.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        queryset = queryset.filter(created_at__lt=_day_start(filters.date_to + timedelta(days=1)))
    return (
        queryset.annotate(
            available=Coalesce(Sum("entries__amount", filter=Q(entries__account_id=available)), 0),
            reserved=Coalesce(Sum("entries__amount", filter=Q(entries__account_id=reserved)), 0),
            # The debt account is negative by what is owed; "owed" is positive when the debt grows.
            owed=-Coalesce(Sum("entries__amount", filter=Q(entries__account_id=debt)), 0),
        )
        .values("id", "kind", "created_at", "memo", "reference_type", "reference_id", "available", "reserved", "owed")
        .order_by("-created_at", "-id")
    )


def encode_cursor(row: dict) -> str:
    return cursors.encode_cursor({"t": row["created_at"].isoformat(), "i": row["id"]})


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    invalid = ApplicationError(
        "Invalid input. cursor: not a cursor this API returned; start again without it.",
        {"field": "cursor", "errors": [{"field": "cursor", "message": "not a cursor this API returned"}]},
        status=422,
    )
    data = cursors.cursor_fields(cursor, {"t", "i"})
    if data is None:
        raise invalid
    try:
        created_at = datetime.fromisoformat(data["t"])
    except (ValueError, TypeError):
        raise invalid from None
    txn_id = data["i"]
    if created_at.tzinfo is None or not cursors.is_row_id(txn_id):
        raise invalid
    try:  # a year near 1 or 9999 with an offset overflows the conversion the database does
        created_at = created_at.astimezone(UTC)
    except OverflowError:
        raise invalid from None
    if not EARLIEST_DAY <= created_at.date() <= LATEST_DAY:
        raise invalid
    return created_at, txn_id


@dataclass(frozen=True)
class TransactionPage:
    rows: list[dict]
    next_cursor: str | None


def transaction_page(
    *, user: User, filters: TransactionFilter, limit: int, cursor: str | None = None
) -> TransactionPage:
    """One page of `transaction_list`, by keyset on (created_at, id), both descending."""
    queryset = transaction_list(user=user, filters=filters)
    if cursor:
        created_at, txn_id = decode_cursor(cursor)
        queryset = queryset.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=txn_id))
    rows = list(queryset[: limit + 1])
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return TransactionPage(rows=rows[:limit], next_cursor=next_cursor)


def transaction_rows_for_export(*, user: User, filters: TransactionFilter) -> Iterator[dict]:
    return transaction_list(user=user, filters=filters).iterator(chunk_size=2000)


def topup_get_for_user(*, user: User, topup_id: int) -> TopUp:
    """The user's own top-up; another user's is a 404, as if it did not exist."""
    topup = TopUp.objects.filter(user=user, id=topup_id).first()
    if topup is None:
        raise Http404("No such top-up.")
    return topup


# --- Spend ---------------------------------------------------------------------------------
# Usage charged, less charges reversed later (a correction, e.g. for downtime).
USAGE = Q(transaction__kind=TransactionKind.HOLD_CAPTURE) | Q(
    transaction__kind=TransactionKind.REVERSAL, transaction__reverses__kind=TransactionKind.HOLD_CAPTURE
)


@dataclass(frozen=True)
class DaySpend:
    day: date
    amount: int


def spend_per_day(*, user: User, days: int = 30, today: date | None = None) -> list[DaySpend]:
    """Usage charged per UTC day, oldest first, one item for every day (zero included)."""
    today = today or timezone.now().date()
    first = today - timedelta(days=days - 1)
    # Over all the user's funds: a charge leaves reserved credits, a reversed charge may come back
    # to available ones.
    ids = list(account_ids(user, FUNDS_KINDS).values()) or [NO_ACCOUNT]
    totals = dict(
        LedgerEntry.objects.filter(
            USAGE,
            account_id__in=ids,
            transaction__created_at__gte=_day_start(first),
            transaction__created_at__lt=_day_start(today + timedelta(days=1)),
        )
        .annotate(day=TruncDate("transaction__created_at", tzinfo=UTC))
        .values("day")
        .annotate(total=Sum("amount"))
        .values_list("day", "total")
    )
    return [DaySpend(day=day, amount=-totals.get(day, 0)) for day in (first + timedelta(n) for n in range(days))]


def _tick_step(value: int) -> int:
    """The y axis's step in micro-USD: the smallest 1, 2, 2.5 or 5 × 10^n that is a whole number of
    micro-USD (the ledger's unit) and whose four steps reach `value`. So every tick is a round
    amount the ledger can hold: $0, $5, $10, $15, $20, or $0.000020, $0.000040… for a cheap CPU."""
    if value <= 0:
        return 250_000  # an empty chart still gets a $1 scale
    need = Fraction(value, 4)
    magnitude = 1
    while magnitude * 10 <= need:
        magnitude *= 10
    for step in (Fraction(1), Fraction(2), Fraction(5, 2), Fraction(5), Fraction(10)):
        amount = step * magnitude
        if amount >= need and amount.denominator == 1:
            return int(amount)
    return 10 * magnitude  # pragma: no cover


def _tick_places(step: int) -> int:
    """Decimals that show every multiple of `step` micro-USD exactly: 2 for whole cents, up to 6."""
    places = 2
    while places < 6 and step % 10 ** (6 - places):
        places += 1
    return places


@dataclass
class SpendChart:
    """Geometry for a server-rendered SVG bar chart, in viewBox units (the template only draws)."""

    width: int
    height: int
    left: int
    right: int  # x where the plot ends
    top: int
    baseline: float  # y of the zero line
    plot_width: int
    plot_height: int
    bars: list[dict] = field(default_factory=list)
    ticks: list[dict] = field(default_factory=list)
    total: int = 0
    days: int = 0
    tick_places: int = 2  # decimals of the y labels: enough to tell the ticks apart

    @property
    def day_label_y(self) -> float:
        return self.baseline + 16

    @property
    def y_title_position(self) -> tuple[int, float]:
        return 14, self.top + self.plot_height / 2


def spend_chart(spend: list[DaySpend], *, width: int = 720, height: int = 240) -> SpendChart:
    """Bars for each day (a 1-unit stub marks a day with no spend), y ticks at quarters of a
    rounded maximum, a date under every fifth day and the last."""
    right_margin, top, bottom = 12, 12, 40
    step = _tick_step(max((item.amount for item in spend), default=0))
    peak = 4 * step
    places = _tick_places(step)
    ticks = [{"value": step * n} for n in range(5)]
    for tick in ticks:
        tick["label"] = f"${Decimal(tick['value']) / 1_000_000:,.{places}f}" if tick["value"] else "$0"
    # Room on the left for the longest label (about 7 units a character) and the axis title.
    left = max(64, 30 + 7 * max(len(tick["label"]) for tick in ticks))
    plot_width, plot_height = width - left - right_margin, height - top - bottom
    chart = SpendChart(
        width=width,
        height=height,
        left=left,
        right=width - right_margin,
        top=top,
        baseline=top + plot_height,
        plot_width=plot_width,
        plot_height=plot_height,
        total=sum(item.amount for item in spend),
        days=len(spend),
        tick_places=places,
    )
    slot = plot_width / max(len(spend), 1)
    for index, item in enumerate(spend):
        bar_height = max(round(plot_height * max(item.amount, 0) / peak, 1), 1.0)
        x = round(left + index * slot + slot * 0.15, 1)
        chart.bars.append(
            {
                "day": item.day,
                "amount": item.amount,
                "zero": item.amount <= 0,
                "x": x,
                "y": round(chart.baseline - bar_height, 1),
                "width": round(slot * 0.7, 1),
                "height": bar_height,
                "label_x": round(x + slot * 0.35, 1),
                "labelled": index % 5 == 0 or index == len(spend) - 1,
            }
        )
    for step, tick in enumerate(ticks):
        chart.ticks.append({**tick, "y": round(chart.baseline - plot_height * step / 4, 1)})
    return chart


# --- Monthly statements --------------------------------------------------------------------
@dataclass(frozen=True)
class StatementLine:
    description: str
    reference: str
    date: datetime
    count: int
    amount: int

    @property
    def amount_display(self) -> str:
        return signed_usd(self.amount)


@dataclass
class StatementGroup:
    kind: str
    label: str
    lines: list[StatementLine]

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def total_display(self) -> str:
        return signed_usd(self.total)


@dataclass
class Statement:
    number: str
    user: User
    year: int
    month: int
    period_start: date
    period_end: date  # inclusive, the last day of the month
    opening: int
    groups: list[StatementGroup]
    is_final: bool  # false while the month is still running

    @property
    def total(self) -> int:
        return sum(group.total for group in self.groups)

    @property
    def closing(self) -> int:
        return self.opening + self.total

    @property
    def credits(self) -> int:
        return sum(line.amount for group in self.groups for line in group.lines if line.amount > 0)

    @property
    def charges(self) -> int:
        return sum(line.amount for group in self.groups for line in group.lines if line.amount < 0)

    @property
    def opening_display(self) -> str:
        return balance_usd(self.opening)

    @property
    def closing_display(self) -> str:
        return balance_usd(self.closing)

    @property
    def total_display(self) -> str:
        return signed_usd(self.total)

    @property
    def credits_display(self) -> str:
        return signed_usd(self.credits)

    @property
    def charges_display(self) -> str:
        return signed_usd(self.charges)


def statement_number(*, user: User, year: int, month: int) -> str:
    return f"SPH-{user.pk}-{year:04d}{month:02d}"


def _month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _first_month(user: User) -> tuple[int, int]:
    joined = user.date_joined.astimezone(UTC)
    ids = list(account_ids(user, FUNDS_KINDS).values())
    first_entry = LedgerEntry.objects.filter(account_id__in=ids or [NO_ACCOUNT]).aggregate(
        first=Min("transaction__created_at")
    )["first"]
    first = min(joined, first_entry.astimezone(UTC)) if first_entry else joined
    return first.year, first.month


def statement_months(*, user: User, now: datetime | None = None) -> list[dict]:
    """Every month from the user's first (sign-up or first transaction) to now, newest first,
    with what came in, what was charged, everything else (refunds, adjustments, disputes) and the
    net change of their funds."""
    now = (now or timezone.now()).astimezone(UTC)
    first_year, first_month = _first_month(user)
    ids = list(account_ids(user, FUNDS_KINDS).values()) or [NO_ACCOUNT]
    start, _ = _month_bounds(first_year, first_month)
    sums: dict[tuple[int, int], dict] = {}
    for row in (
        LedgerEntry.objects.filter(account_id__in=ids, transaction__created_at__gte=start)
        .values("transaction__created_at__year", "transaction__created_at__month")
        .annotate(
            net=Sum("amount"),
            topups=Coalesce(Sum("amount", filter=Q(transaction__kind=TransactionKind.TOPUP)), 0),
            usage=Coalesce(Sum("amount", filter=USAGE), 0),
        )
    ):
        sums[(row["transaction__created_at__year"], row["transaction__created_at__month"])] = row
    months = []
    year, month = first_year, first_month
    while (year, month) <= (now.year, now.month):
        row = sums.get((year, month), {})
        months.append(
            {
                "year": year,
                "month": month,
                "slug": f"{year:04d}-{month:02d}",
                "name": f"{calendar.month_name[month]} {year}",
                "number": statement_number(user=user, year=year, month=month),
                "topups": row.get("topups", 0),
                "usage": -row.get("usage", 0),
                # Refunds, adjustments, disputes: what else moved the funds, so that
                # top-ups − usage + other = net change on every row.
                "other": row.get("net", 0) - row.get("topups", 0) - row.get("usage", 0),
                "other_display": signed_usd(row.get("net", 0) - row.get("topups", 0) - row.get("usage", 0)),
                "net": row.get("net", 0),
                "net_display": signed_usd(row.get("net", 0)),
                "current": (year, month) == (now.year, now.month),
            }
        )
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    months.reverse()
    return months


def statement_get(*, user: User, year: int, month: int, now: datetime | None = None) -> Statement:
    """The statement for one month: opening balance, lines grouped by type, closing balance.

    Usage is one line per rental (reference); every other transaction is a line of its own.
    Holds placed and released net to zero over the user's funds and so do not appear.
    """
    now = (now or timezone.now()).astimezone(UTC)
    if not 1 <= month <= 12 or (year, month) > (now.year, now.month) or (year, month) < _first_month(user):
        raise Http404("No statement for this month.")
    start, end = _month_bounds(year, month)
    ids = list(account_ids(user, FUNDS_KINDS).values()) or [NO_ACCOUNT]
    entries = LedgerEntry.objects.filter(account_id__in=ids)
    opening = entries.filter(transaction__created_at__lt=start).aggregate(total=Sum("amount"))["total"] or 0
    in_period = entries.filter(transaction__created_at__gte=start, transaction__created_at__lt=end)

    groups: dict[str, StatementGroup] = {}

    def group(kind: str) -> StatementGroup:
        if kind not in groups:
            groups[kind] = StatementGroup(kind=kind, label=KIND_LABELS.get(kind, kind), lines=[])
        return groups[kind]

    usage = (
        in_period.filter(USAGE)
        .values("transaction__reference_type", "transaction__reference_id")
        .annotate(amount=Sum("amount"), count=Count("transaction", distinct=True), last=Max("transaction__created_at"))
        .order_by("transaction__reference_type", "transaction__reference_id")
    )
    usage = [row for row in usage if row["amount"]]
    names = describe_references(
        ((row["transaction__reference_type"], row["transaction__reference_id"]) for row in usage), user=user
    )
    for row in usage:
        pair = (row["transaction__reference_type"], row["transaction__reference_id"])
        reference = f"{pair[0]} {pair[1]}"
        group(TransactionKind.HOLD_CAPTURE).lines.append(
            StatementLine(
                description=f"Usage: {names[pair].label if pair in names else reference}",
                reference=reference,
                date=row["last"],
                count=row["count"],
                amount=row["amount"],
            )
        )
    others = (
        in_period.exclude(USAGE)
        .values(
            "transaction_id",
            "transaction__kind",
            "transaction__memo",
            "transaction__reference_type",
            "transaction__reference_id",
            "transaction__created_at",
        )
        .annotate(amount=Sum("amount"))
        .order_by("transaction__created_at", "transaction_id")
    )
    for row in others:
        if row["amount"]:  # holds placed and released move money within the user's funds
            kind = row["transaction__kind"]
            group(kind).lines.append(
                StatementLine(
                    description=transaction_description({"kind": kind, "memo": row["transaction__memo"]}),
                    reference=f"{row['transaction__reference_type']} {row['transaction__reference_id']}",
                    date=row["transaction__created_at"],
                    count=1,
                    amount=row["amount"],
                )
            )
    order = [choice for choice, _label in TransactionKind.choices]
    return Statement(
        number=statement_number(user=user, year=year, month=month),
        user=user,
        year=year,
        month=month,
        period_start=start.date(),
        period_end=(end - timedelta(days=1)).date(),
        opening=opening,
        groups=sorted(groups.values(), key=lambda g: order.index(g.kind) if g.kind in order else len(order)),
        is_final=end <= now,
    )


def funds_balance_at(*, user: User, moment: datetime) -> int:
    """Available + reserved − owed, from entries posted before `moment`."""
    ids = list(account_ids(user, FUNDS_KINDS).values()) or [NO_ACCOUNT]
    return (
        LedgerEntry.objects.filter(account_id__in=ids, transaction__created_at__lt=moment).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
