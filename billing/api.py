"""/api/v1/billing: balance, transaction history, card top-ups. Session or API key auth."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status
from pydantic import BaseModel, Field, field_validator

from accounts.auth import api_auth
from accounts.models import User
from billing import stripe_service
from billing.forms import parse_usd_amount
from billing.models import TransactionKind
from billing.references import describe_transactions
from billing.runway import user_runway
from billing.selectors import user_balances
from billing.statements import TransactionFilter, transaction_page
from core.errors import ApplicationError
from core.money import exact_usd
from core.schemas import ErrorOut

router = Router(tags=["billing"], auth=api_auth)


ERRORS = {code: ErrorOut for code in (400, 401, 403, 409, 422)}


def _user(request: HttpRequest) -> User:
    return request.auth  # type: ignore[attr-defined, return-value]


class BalanceOut(BaseModel):
    available: str = Field(description="USD you can spend, exact decimal string")
    available_micros: int
    reserved: str = Field(description="USD held for running deployments")
    reserved_micros: int
    debt: str = Field(description="USD owed after a reversed payment; blocks new deployments until repaid")
    debt_micros: int
    spend_per_hour: str = Field(
        description="USD per hour of your running hourly rentals (monthly reservations, paid up front, and "
        "rentals paused while their node is silent count as 0)"
    )
    spend_per_hour_micros: int
    runway_funds_micros: int = Field(
        description="Available credits plus what is left on the running rentals' holds, less unsettled usage"
    )
    runway_seconds: int | None = Field(description="How long runway_funds last at spend_per_hour; null when 0")
    runway_text: str = Field(description='In words: "about 3 days 4 hours at $1.20/h"')


@router.get("/balance", response={200: BalanceOut, **ERRORS}, operation_id="billing_balance", summary="Your balance")
def balance(request: HttpRequest):
    balances = user_balances(user=_user(request))
    runway = user_runway(user=_user(request))
    return {
        "spend_per_hour": exact_usd(runway.spend_per_hour),
        "spend_per_hour_micros": runway.spend_per_hour,
        "runway_funds_micros": runway.funds,
        "runway_seconds": runway.seconds,
        "runway_text": runway.text,
        "available": exact_usd(balances.available),
        "available_micros": balances.available,
        "reserved": exact_usd(balances.reserved),
        "reserved_micros": balances.reserved,
        "debt": exact_usd(balances.debt),
        "debt_micros": balances.debt,
    }


class ReferenceOut(BaseModel):
    type: str = Field(description="What caused it, e.g. topup, lease, hold")
    id: str


class TransactionOut(BaseModel):
    id: int
    kind: TransactionKind
    created_at: datetime
    amount: str = Field(description="Signed change of your available credits, USD")
    amount_micros: int
    reserved_amount: str = Field(description="Signed change of your reserved credits, USD")
    reserved_amount_micros: int
    debt_amount: str = Field(description="Change of what you owe, USD (positive: you owe more)")
    debt_amount_micros: int
    memo: str = Field(description="The note stored with the transaction")
    description: str = Field(description='What happened, in words: "Held $0.01 more for Deployment #8 (job)"')
    reference: ReferenceOut


class TransactionPageOut(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


def _transaction_item(row: dict) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "created_at": row["created_at"],
        "amount": exact_usd(row["available"]),
        "amount_micros": row["available"],
        "reserved_amount": exact_usd(row["reserved"]),
        "reserved_amount_micros": row["reserved"],
        "debt_amount": exact_usd(row["owed"]),
        "debt_amount_micros": row["owed"],
        "memo": row["memo"],
        "description": row["description"],
        "reference": {"type": row["reference_type"], "id": row["reference_id"]},
    }


@router.get(
    "/transactions",
    response={200: TransactionPageOut, **ERRORS},
    operation_id="billing_transactions_list",
    summary="Your transactions",
)
def transactions_list(
    request: HttpRequest,
    filters: Query[TransactionFilter],
    limit: int = Query(50, ge=1, le=200, description="Items per page, at most 200"),
    cursor: str | None = Query(None, max_length=200, description="next_cursor from the previous page"),
):
    """Ledger transactions that touched your credits, newest first, by cursor."""
    user = _user(request)
    page = transaction_page(user=user, filters=filters, limit=limit, cursor=cursor)
    rows = describe_transactions(page.rows, user=user)
    return {"items": [_transaction_item(row) for row in rows], "next_cursor": page.next_cursor}


class TopUpIn(BaseModel):
    amount: str = Field(description='USD as a string with at most 2 decimal places, e.g. "25.00"; $5 to $10,000')

    @field_validator("amount", mode="before")
    @classmethod
    def _strict_amount(cls, value: object) -> str:
        try:
            parse_usd_amount(value)
        except ApplicationError as exc:
            raise ValueError(exc.message) from None
        return str(value).strip()

    @property
    def amount_micros(self) -> int:
        return parse_usd_amount(self.amount)


class TopUpOut(BaseModel):
    topup_id: int
    client_secret: str = Field(description="Confirm the PaymentIntent with Stripe.js using this")
    publishable_key: str
    amount: str = Field(description="USD")
    amount_micros: int


@router.post(
    "/topups",
    response={201: TopUpOut, 503: ErrorOut, **ERRORS},
    operation_id="billing_topups_create",
    summary="Start a card top-up",
)
def topups_create(request: HttpRequest, body: TopUpIn):  # "body": the error handler drops it from field names
    """Creates a Stripe PaymentIntent. Credits arrive when Stripe confirms the payment (webhook)."""

    intent = stripe_service.topup_create(user=_user(request), amount_micros=body.amount_micros)
    return Status(
        201,
        {
            "topup_id": intent.topup.id,
            "client_secret": intent.client_secret,
            "publishable_key": intent.publishable_key,
            "amount": exact_usd(intent.topup.amount),
            "amount_micros": intent.topup.amount,
        },
    )
