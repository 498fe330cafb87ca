"""/api/v1/billing/statements: the monthly statements of the pages /billing/statements/ and
/billing/statements/<YYYY-MM>/, from a terminal. Thin: billing.statements does the work, so the
numbers are the page's. Session or API key auth; reading needs the `read` (or `billing`) scope
(accounts.auth derives it from the method and path).

Amounts are exact USD strings with 6 decimals, each with its micro-USD integer twin (`*_micros`),
like GET /billing/balance. Credits are positive, charges negative; `usage` in the months list is
what was charged, as a positive amount (as the page shows it)."""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime

from django.http import Http404, HttpRequest
from django.urls import reverse
from ninja import Router
from pydantic import BaseModel, Field

from accounts.auth import api_auth
from accounts.models import User
from billing.statements import Statement, statement_get, statement_months
from core.errors import ApplicationError
from core.money import exact_usd
from core.schemas import ERRORS

router = Router(tags=["billing"], auth=api_auth)

PERIOD = re.compile(r"^([0-9]{4})-([0-9]{2})$", re.ASCII)


def _user(request: HttpRequest) -> User:
    return request.auth  # type: ignore[attr-defined, return-value]


def _money(name: str, micros: int) -> dict[str, str | int]:
    return {name: exact_usd(micros), f"{name}_micros": micros}


class StatementMonthOut(BaseModel):
    year: int
    month: int
    period: str = Field(description='The month, "YYYY-MM": GET /billing/statements/{period} has its statement')
    name: str = Field(description='"March 2026"')
    number: str = Field(description='The statement number, e.g. "SPH-12-202603"')
    topups: str = Field(description="Credits added (card and crypto top-ups), USD")
    topups_micros: int
    usage: str = Field(description="Usage charged, less charges reversed, USD (positive: money spent)")
    usage_micros: int
    other: str = Field(description="Everything else (refunds, adjustments, disputes), signed, USD")
    other_micros: int
    net: str = Field(description="Net change of your funds: topups − usage + other, USD")
    net_micros: int
    current: bool = Field(description="The month still running (its statement is not final)")


class StatementLineOut(BaseModel):
    description: str
    reference: str = Field(description='What it refers to, e.g. "lease 12" or "stripe_payment_intent pi_…"')
    date: datetime = Field(description="When it was posted (for usage: the latest charge)")
    count: int = Field(description="Transactions on the line (usage: one line per rental, several charges)")
    amount: str = Field(description="Signed USD: credits positive, charges negative")
    amount_micros: int


class StatementGroupOut(BaseModel):
    kind: str = Field(description="Transaction type, e.g. topup, hold_capture, refund, adjustment")
    label: str
    total: str = Field(description="Signed USD")
    total_micros: int
    lines: list[StatementLineOut]


class StatementOut(BaseModel):
    number: str
    period: str = Field(description='"YYYY-MM"')
    name: str = Field(description='"March 2026"')
    period_start: date = Field(description="First day (UTC)")
    period_end: date = Field(description="Last day (UTC), inclusive")
    is_final: bool = Field(description="False while the month is still running")
    opening: str = Field(description="Your funds (available + reserved − owed) when the month began, USD")
    opening_micros: int
    closing: str = Field(description="opening + total, USD")
    closing_micros: int
    credits: str = Field(description="Sum of the positive lines, USD")
    credits_micros: int
    charges: str = Field(description="Sum of the negative lines, USD (negative)")
    charges_micros: int
    total: str = Field(description="credits + charges: the month's net change, USD")
    total_micros: int
    groups: list[StatementGroupOut] = Field(description="Lines grouped by transaction type")
    page_url: str = Field(description="The printable statement page")


@router.get(
    "/statements",
    response={200: list[StatementMonthOut], **ERRORS},
    operation_id="billing_statements_list",
    summary="Your monthly statements",
)
def statements_list(request: HttpRequest):
    """Every month from your first (sign-up or first transaction) to this one, newest first, with
    its totals."""
    return [
        {
            "year": row["year"],
            "month": row["month"],
            "period": row["slug"],
            "name": row["name"],
            "number": row["number"],
            **_money("topups", row["topups"]),
            **_money("usage", row["usage"]),
            **_money("other", row["other"]),
            **_money("net", row["net"]),
            "current": row["current"],
        }
        for row in statement_months(user=_user(request))
    ]


def _period(value: str) -> tuple[int, int]:
    match = PERIOD.match(value)
    if not match or not 1 <= int(match.group(2)) <= 12:
        message = "must be a month written YYYY-MM, e.g. 2026-03"
        raise ApplicationError(
            f"Invalid input. period: {message}.",
            {"field": "period", "errors": [{"field": "period", "message": message}]},
            status=422,
        )
    return int(match.group(1)), int(match.group(2))


def _statement_out(request: HttpRequest, statement: Statement) -> dict:
    period = f"{statement.year:04d}-{statement.month:02d}"
    return {
        "number": statement.number,
        "period": period,
        "name": f"{calendar.month_name[statement.month]} {statement.year}",
        "period_start": statement.period_start,
        "period_end": statement.period_end,
        "is_final": statement.is_final,
        **_money("opening", statement.opening),
        **_money("closing", statement.closing),
        **_money("credits", statement.credits),
        **_money("charges", statement.charges),
        **_money("total", statement.total),
        "groups": [
            {
                "kind": group.kind,
                "label": group.label,
                **_money("total", group.total),
                "lines": [
                    {
                        "description": line.description,
                        "reference": line.reference,
                        "date": line.date,
                        "count": line.count,
                        **_money("amount", line.amount),
                    }
                    for line in group.lines
                ],
            }
            for group in statement.groups
        ],
        "page_url": request.build_absolute_uri(reverse("billing_statement", args=[period])),
    }


@router.get(
    "/statements/{period}",
    response={200: StatementOut, **ERRORS},
    operation_id="billing_statements_get",
    summary="One month's statement",
)
def statements_get(request: HttpRequest, period: str):
    """The statement for `period` ("YYYY-MM"): opening balance, lines grouped by type, closing
    balance. A month before your first or after this one is a 404."""
    user = _user(request)
    year, month = _period(period)
    try:
        statement = statement_get(user=user, year=year, month=month)
    except Http404:
        months = statement_months(user=user)
        if not months:
            raise Http404(f"No statement for {period}.") from None
        first, last = months[-1]["slug"], months[0]["slug"]
        raise Http404(f"No statement for {period}: your statements run from {first} to {last}.") from None
    return _statement_out(request, statement)
