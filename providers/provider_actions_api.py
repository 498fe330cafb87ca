"""/api/v1/provider routes for what a provider otherwise does on a page (issue 23): list prices
(/provider/prices/), payouts (/billing/earnings/), slashes and their appeals (/provider/stake/).

Attached to providers.api's `provider_router` (mounted at /provider), so the paths are
/api/v1/provider/prices, /provider/payouts, /provider/slashes, /provider/slashes/{id} and
/provider/slashes/{id}/appeal. API keys: GET needs `read` (or `provider`), PUT and POST need
`provider` (accounts.auth derives it from the path).

Thin: each write calls the page's service (providers.services.provider_prices_update,
billing.payouts.payout_request_create, providers.slashing.appeal_create), which checks the input
and writes in one database transaction; its ApplicationError is the API's error answer.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from ninja import Path, Query, Router, Status
from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints, field_validator
from spheron_sdk import rewards as sdk_rewards

from accounts.auth import api_auth
from accounts.models import User, WalletPurpose
from accounts.wallets import wallet_current
from billing.forms import parse_usd_amount
from billing.models import PayoutRequest
from billing.payouts import (
    approval_threshold_micros,
    minimum_micros,
    payout_request_create,
    provider_earnings,
    token_amount_text,
)
from billing.statements import decode_cursor, encode_cursor
from core.errors import ApplicationError
from core.money import exact_usd, exact_usd_or_none
from core.schemas import ERRORS, NoNulIn
from providers import earnings, services
from providers.models import ProviderProfile, Slash
from providers.pricing import (
    FIZZ_CPU_PER_CORE_MONTH,
    FIZZ_MEMORY_PER_GB_MONTH,
    FIZZ_STORAGE_PER_GB_MONTH,
    fizz_gpu_price_per_hour_micros,
)
from providers.selectors import gpu_model_list
from providers.slashing import APPEALABLE, MAX_APPEAL, appeal_create, get_slash_for_provider, slash_evidence

router = Router(tags=["provider"], auth=api_auth)

MAX_ID = 2**63 - 1
SlashId = Path(..., ge=1, le=MAX_ID, description="The slash's id")
PAGE_LIMIT = Query(20, ge=1, le=100, description="Items per page, at most 100")
PAGE_CURSOR = Query(None, max_length=200, description="next_cursor from the previous page")
# The page's price inputs are at most 40 characters (providers.forms.ProviderPricesForm).
PriceText = Annotated[str, StringConstraints(max_length=40)]
GpuSlug = Annotated[str, StringConstraints(min_length=1, max_length=40)]
UNIT_FIELDS = {
    "cpu_per_core_month": ("cpu_price_per_core_month_micros", FIZZ_CPU_PER_CORE_MONTH),
    "memory_per_gb_month": ("memory_price_per_gb_month_micros", FIZZ_MEMORY_PER_GB_MONTH),
    "storage_per_gb_month": ("storage_price_per_gb_month_micros", FIZZ_STORAGE_PER_GB_MONTH),
}


def _user(request: HttpRequest) -> User:
    return request.auth  # type: ignore[attr-defined, return-value]


def _profile(request: HttpRequest) -> ProviderProfile:
    return services.get_provider_for_user(_user(request))


def _bad_field(exc: ApplicationError, field: str) -> ApplicationError:
    """A service's refusal of one input, in the shape the API gives invalid input: the field named
    in the message, in `extra.field` and in `extra.errors`."""
    extra = {**exc.extra, "field": field, "errors": [{"field": field, "message": exc.message}]}
    return ApplicationError(f"Invalid input. {field}: {exc.message}", extra, status=exc.status)


# --- Prices --------------------------------------------------------------------------------------


class GpuPriceOut(BaseModel):
    gpu_model: str = Field(description="The model's slug (GET /api/v1/gpu-models)")
    name: str
    kind: str = Field(description="gpu, apple (CPU tier) or cpu (CPU tier)")
    price_per_hour: str | None = Field(description="Your USD per GPU-hour; null when you do not offer the model")
    price_per_hour_micros: int | None
    fizz_price_per_hour: str = Field(description="The Fizz price of the model, for reference")
    fizz_price_per_hour_micros: int


class UnitPriceOut(BaseModel):
    price: str = Field(description="Your USD per unit-month (a core, or a GB)")
    price_micros: int
    fizz_price: str = Field(description="The Fizz price, for reference")
    fizz_price_micros: int


class PricesOut(BaseModel):
    gpu_prices: list[GpuPriceOut] = Field(description="Every model of the catalog, in the catalog's order")
    cpu_per_core_month: UnitPriceOut
    memory_per_gb_month: UnitPriceOut
    storage_per_gb_month: UnitPriceOut
    offered: int = Field(description="How many GPU models you price")
    applies_to: str


class PricesIn(NoNulIn):
    """All your provider-mode list prices at once, as the prices page posts them."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is named, not ignored

    gpu_prices: dict[GpuSlug, PriceText | None] = Field(
        max_length=500,
        description='USD per GPU-hour by model slug, e.g. {"rtx4090": "0.30"}. A model left out, or null or '
        '"", is not offered: PUT replaces the whole list (PATCH changes some).',
    )
    cpu_per_core_month: PriceText = Field(description='USD per core-month, e.g. "0.75"')
    memory_per_gb_month: PriceText = Field(description='USD per GB-month of memory, e.g. "0.10"')
    storage_per_gb_month: PriceText = Field(description='USD per GB-month of storage, e.g. "0.01"')

    @field_validator("cpu_per_core_month", "memory_per_gb_month", "storage_per_gb_month", mode="before")
    @classmethod
    def _unit_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError('must be a price in USD as a string, e.g. "0.75"')
        return value

    @field_validator("gpu_prices", mode="before")
    @classmethod
    def _gpu_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for slug, price in value.items():
                if price is not None and not isinstance(price, str):
                    raise ValueError(f'{slug}: must be a price in USD as a string, e.g. "0.30", or null')
                if "\x00" in str(slug) or (isinstance(price, str) and "\x00" in price):
                    raise ValueError("must not contain NUL bytes")
        return value


class PricesPatchIn(PricesIn):
    """Only the prices to change: the rest stay as they are."""

    gpu_prices: dict[GpuSlug, PriceText | None] = Field(
        default_factory=dict,
        max_length=500,
        description='USD per GPU-hour by model slug to change, e.g. {"rtx4090": "0.35"}; null or "" stops '
        "offering that model. Models left out keep their price.",
    )
    cpu_per_core_month: PriceText | None = Field(default=None, description="Unchanged when left out")
    memory_per_gb_month: PriceText | None = Field(default=None, description="Unchanged when left out")
    storage_per_gb_month: PriceText | None = Field(default=None, description="Unchanged when left out")


def _prices(provider: ProviderProfile) -> dict[str, Any]:
    current = dict(provider.gpu_prices.values_list("gpu_model_id", "price_per_hour_micros"))
    rows = []
    for model in gpu_model_list():
        fizz = fizz_gpu_price_per_hour_micros(model.multiplier)
        mine = current.get(model.slug)
        rows.append(
            {
                "gpu_model": model.slug,
                "name": model.name,
                "kind": model.kind,
                "price_per_hour": exact_usd_or_none(mine),
                "price_per_hour_micros": mine,
                "fizz_price_per_hour": exact_usd(fizz),
                "fizz_price_per_hour_micros": fizz,
            }
        )
    units = {}
    for name, (attribute, fizz) in UNIT_FIELDS.items():
        micros = getattr(provider, attribute)
        units[name] = {
            "price": exact_usd(micros),
            "price_micros": micros,
            "fizz_price": exact_usd(fizz),
            "fizz_price_micros": fizz,
        }
    return {
        "gpu_prices": rows,
        **units,
        "offered": len(current),
        "applies_to": "Provider-mode nodes registered from now on; running leases keep their prices. "
        "Fizz nodes always rent at the Fizz prices.",
    }


@router.get(
    "/prices",
    response={200: PricesOut, **ERRORS},
    operation_id="provider_prices",
    summary="Your provider-mode list prices, with the Fizz prices for reference",
)
def prices_get(request: HttpRequest):
    """The prices page as JSON: USD per GPU-hour for each model of the catalog (null: not offered)
    and per core-month and GB-month. Not a provider: 403."""
    return _prices(_profile(request))


@router.put(
    "/prices",
    response={200: PricesOut, **ERRORS},
    operation_id="provider_prices_update",
    summary="Set your provider-mode list prices",
)
def prices_put(request: HttpRequest, payload: PricesIn):
    """Checked as the prices page checks them (a price above zero, at most $100 per GPU-hour and
    $1,000 per unit-month, a model of the catalog); nothing is written unless all are good, then all
    are written in one transaction. A bad price: 400 naming the field (`gpu_prices.<slug>`,
    `cpu_per_core_month`, …) in the message and `extra.field`."""
    provider = _profile(request)
    known = list(gpu_model_list().values_list("slug", flat=True))
    # A model left out is not offered, as a blank field on the page; unknown slugs reach the service.
    gpu_prices: dict[str, str | None] = {slug: None for slug in known}
    gpu_prices.update(payload.gpu_prices)
    units = {name: getattr(payload, name) for name in UNIT_FIELDS}
    return _prices_write(provider, gpu_prices, units)


@router.patch(
    "/prices",
    response={200: PricesOut, **ERRORS},
    operation_id="provider_prices_patch",
    summary="Change some of your provider-mode list prices",
)
def prices_patch(request: HttpRequest, payload: PricesPatchIn):
    """The prices given, checked as PUT checks them; every other price is kept. The provider's row
    is locked while the prices are read and written, so two changes at once both land (no lost
    update, as a GET then PUT could have)."""
    provider = _profile(request)
    with transaction.atomic():
        provider = ProviderProfile.objects.select_for_update().get(pk=provider.pk)
        units = {}
        for name, (attribute, _fizz) in UNIT_FIELDS.items():
            given = getattr(payload, name)
            units[name] = given if given is not None else exact_usd(getattr(provider, attribute))
        return _prices_write(provider, dict(payload.gpu_prices), units)


def _prices_write(provider: ProviderProfile, gpu_prices: dict[str, str | None], units: dict[str, str]) -> dict:
    try:
        services.provider_prices_update(provider=provider, gpu_prices=gpu_prices, **units)
    except ApplicationError as exc:
        field = str(exc.extra.get("field", ""))
        if field.startswith("gpu_") and field not in UNIT_FIELDS:
            field = f"gpu_prices.{field.removeprefix('gpu_')}"
        raise _bad_field(exc, field or "request") from None
    provider.refresh_from_db()
    return _prices(provider)


# --- Payouts -------------------------------------------------------------------------------------


class PayoutOut(BaseModel):
    id: int
    created_at: datetime
    updated_at: datetime
    amount: str = Field(description="USD of settled earnings the payout is for")
    amount_micros: int
    status: str = Field(description="requested (waits for an admin), approved, sending, paid, failed or rejected")
    needs_approval: bool = Field(description="Above the approval threshold: an admin approves it first")
    approved_at: datetime | None
    chain: str | None = Field(description="The chain's key, e.g. base")
    chain_name: str | None
    chain_id: int | None = Field(description="EIP-155 id")
    token_symbol: str = Field(description="The chain's native coin's symbol, or SPON")
    token_amount: str | None = Field(description="Base units sent; null until the payout is recorded for sending")
    token_amount_text: str = Field(description='"0.0041 ETH", exact; "" until recorded')
    usd_rate: str | None = Field(description="USD per whole token the amount was worked out at")
    rate_at: datetime | None
    destination: str = Field(description="Your linked payout address")
    tx_hash: str = Field(description='The transfer\'s hash; "" before it is signed')
    tx_url: str = Field(description="The chain's explorer page for it, when the chain has one")
    tx_status: str | None = Field(description="recorded, sent, mined, failed, replaced or stuck; null before")
    waiting_reason: str = Field(description="Why an approved payout is not sent yet")
    failure_reason: str = Field(description="Why it failed or was rejected")
    paid_at: datetime | None


class PayoutBalanceOut(BaseModel):
    pending: str = Field(description="USD earned, not yet settled (held after each lease)")
    pending_micros: int
    settled: str = Field(description="USD settled")
    settled_micros: int
    requested: str = Field(description="USD your open payouts earmark of the settled earnings")
    requested_micros: int
    payable: str = Field(description="USD you may request now: settled less requested")
    payable_micros: int
    minimum: str = Field(description="The smallest payout, USD")
    minimum_micros: int
    approval_threshold: str = Field(description="Payouts above this wait for an admin, USD")
    approval_threshold_micros: int
    payout_address: str | None = Field(description="Your linked payout address; null: link one first")


class PayoutPageOut(BaseModel):
    balance: PayoutBalanceOut
    items: list[PayoutOut] = Field(description="Your payout requests, newest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class PayoutIn(NoNulIn):
    model_config = ConfigDict(extra="forbid")

    amount: StrictStr = Field(description='USD as a string with at most 2 decimal places, e.g. "25.00"')
    chain: Annotated[StrictStr, StringConstraints(max_length=40)] = Field(
        description="The key of an enabled EVM chain to be paid on (GET /api/v1/chains), e.g. base"
    )
    token: Annotated[StrictStr, StringConstraints(max_length=20)] = Field(
        "native", description='"native" (the chain\'s coin, or its symbol) or "SPON" where the chain has $SPON'
    )

    @field_validator("amount", mode="before")
    @classmethod
    def _strict_amount(cls, value: object) -> object:
        try:
            parse_usd_amount(value)
        except ApplicationError as exc:
            raise ValueError(exc.message) from None
        return value


def _require_provider_role(user: User) -> None:
    if not user.is_provider:  # the earnings page's and payout_request_create's check
        raise ApplicationError("Only providers have earnings to pay out.", status=403)


def _payout(payout: PayoutRequest) -> dict[str, Any]:
    chain, tx = payout.chain, payout.chain_transaction
    tx_hash = tx.tx_hash if tx is not None else ""
    return {
        "id": payout.pk,
        "created_at": payout.created_at,
        "updated_at": payout.updated_at,
        "amount": exact_usd(payout.amount),
        "amount_micros": payout.amount,
        "status": payout.status,
        "needs_approval": payout.needs_approval,
        "approved_at": payout.approved_at,
        "chain": chain.key if chain is not None else None,
        "chain_name": chain.name if chain is not None else None,
        "chain_id": chain.chain_id if chain is not None else None,
        "token_symbol": payout.token_symbol,
        "token_amount": str(int(payout.token_amount)) if payout.token_amount is not None else None,
        "token_amount_text": token_amount_text(payout),
        "usd_rate": sdk_rewards.plain(Decimal(payout.usd_rate)) if payout.usd_rate is not None else None,
        "rate_at": payout.rate_at,
        "destination": payout.destination,
        "tx_hash": tx_hash,
        "tx_url": chain.explorer_url(tx_hash) if tx_hash and chain is not None else "",
        "tx_status": tx.status if tx is not None else None,
        "waiting_reason": payout.waiting_reason,
        "failure_reason": payout.failure_reason,
        "paid_at": payout.paid_at,
    }


def _payout_balance(user: User) -> dict[str, Any]:
    totals = provider_earnings(user=user)
    link = wallet_current(user=user)[WalletPurpose.PAYOUT]
    minimum, threshold = minimum_micros(), approval_threshold_micros()
    return {
        "pending": exact_usd(totals.pending),
        "pending_micros": totals.pending,
        "settled": exact_usd(totals.settled),
        "settled_micros": totals.settled,
        "requested": exact_usd(totals.requested),
        "requested_micros": totals.requested,
        "payable": exact_usd(totals.payable),
        "payable_micros": totals.payable,
        "minimum": exact_usd(minimum),
        "minimum_micros": minimum,
        "approval_threshold": exact_usd(threshold),
        "approval_threshold_micros": threshold,
        "payout_address": link.address if link is not None else None,
    }


def _keyset(queryset, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """One page of a queryset ordered newest first by (created_at, id), and the next page's cursor."""
    queryset = queryset.order_by("-created_at", "-id")
    if cursor:
        created_at, last_id = decode_cursor(cursor)
        queryset = queryset.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=last_id))
    rows = list(queryset[: limit + 1])
    page = rows[:limit]
    more = len(rows) > limit
    return page, (encode_cursor({"created_at": page[-1].created_at, "id": page[-1].pk}) if more else None)


@router.get(
    "/payouts",
    response={200: PayoutPageOut, **ERRORS},
    operation_id="provider_payouts",
    summary="Your payout requests, newest first, and what you may request",
)
def payouts_list(request: HttpRequest, limit: int = PAGE_LIMIT, cursor: str | None = PAGE_CURSOR):
    """The earnings page's payouts as JSON, by cursor: each request's status, USD amount, chain,
    token amount at its rate, transaction and why it waits or failed; `balance` says what you may
    request now. Without the provider role: 403."""
    user = _user(request)
    _require_provider_role(user)
    payouts = PayoutRequest.objects.filter(user=user).select_related("chain", "token", "chain_transaction")
    page, next_cursor = _keyset(payouts, cursor, limit)
    return {"balance": _payout_balance(user), "items": [_payout(row) for row in page], "next_cursor": next_cursor}


@router.post(
    "/payouts",
    response={201: PayoutOut, **ERRORS},
    operation_id="provider_payout_create",
    summary="Request a payout of settled earnings to your linked payout address",
)
def payout_create(request: HttpRequest, payload: PayoutIn):
    """As the earnings page's form: at least the minimum and at most your settled earnings not yet
    requested (409 with `extra.payable_micros`), on an enabled EVM chain in its native coin or $SPON
    (400 naming `chain` or `token`), to your linked payout address (none: 409 with `extra.link`).
    Up to the approval threshold it is approved at once (status approved), above it waits for an
    admin (status requested). Without the provider role: 403."""
    user = _user(request)
    payout = payout_request_create(
        user=user, amount=parse_usd_amount(payload.amount), chain=payload.chain, token=payload.token
    )
    payout = PayoutRequest.objects.select_related("chain", "token", "chain_transaction").get(pk=payout.pk)
    return Status(201, _payout(payout))


# --- Slashes and appeals -------------------------------------------------------------------------


class AppealOut(BaseModel):
    id: int
    status: str = Field(description="open (an admin decides), upheld or dismissed")
    text: str
    created_at: datetime
    answer: str = Field(description="The admin's answer once decided")
    decided_at: datetime | None
    refund_status: str = Field(
        description='An upheld appeal\'s refund: waiting, sending, returned, failed, restored, nothing; "" before'
    )
    refund_amount: str | None = Field(description="$SPON base units returned")
    refund_amount_spon: str | None
    refund_tx_hash: str
    refund_tx_url: str
    refund_note: str
    refunded_at: datetime | None


class SlashOut(BaseModel):
    id: int
    created_at: datetime
    amount: str = Field(description="$SPON base units decided")
    amount_spon: str
    amount_slashed: str | None = Field(description="$SPON base units actually taken; null until known")
    amount_slashed_spon: str | None
    status: str = Field(description="decided, sending, applied, off_chain (admin-recorded stake) or failed")
    failure_reason: str
    applied_at: datetime | None
    reason: str
    reference: str
    reason_hash: str = Field(description='keccak256 of {"reason":…,"reference":…}, as sent to SponStaking')
    evidence_type: str = Field(description='"lease", "challenge" or ""')
    evidence_id: str
    node_id: int | None
    address: str = Field(description="The stake address slashed (on chain)")
    chain_id: int | None
    tx_hash: str
    tx_url: str
    tx_status: str | None
    can_appeal: bool = Field(description="Applied and not appealed yet")
    appeal: AppealOut | None
    url: str = Field(description="The slash's page, with its evidence")


class SlashPageOut(BaseModel):
    items: list[SlashOut] = Field(description="Your slashes, newest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class SlashEvidenceOut(BaseModel):
    kind: str = Field(description='"lease", "challenge" or ""')
    node_id: int | None
    node_name: str | None
    lease_meter: dict[str, Any] | None = Field(
        description="For a lease: started_at, price_per_hour, closed_at (the last heartbeat charged), charged"
    )
    node_events: list[dict[str, Any]] = Field(description="For a lease: the node's events over the downtime")
    era_start: datetime | None
    era_end: datetime | None
    failed_challenges: list[dict[str, Any]] = Field(description="For a challenge: the era's failed challenges")


class SlashDetailOut(SlashOut):
    evidence: SlashEvidenceOut


class AppealIn(NoNulIn):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[StrictStr, StringConstraints(max_length=MAX_APPEAL * 2)] = Field(
        description=f"Why the slash is wrong, at most {MAX_APPEAL:,} characters"
    )


def _tx(tx) -> dict[str, Any]:
    tx_hash = tx.tx_hash if tx is not None else ""
    return {
        "hash": tx_hash,
        "url": tx.chain.explorer_url(tx_hash) if tx_hash else "",
        "status": tx.status if tx is not None else None,
        "chain_id": tx.chain.chain_id if tx is not None else None,
    }


def _appeal(appeal) -> dict[str, Any] | None:
    if appeal is None:
        return None
    refund_tx = _tx(appeal.refund_tx)
    refund = appeal.refund_amount
    return {
        "id": appeal.id,
        "status": appeal.status,
        "text": appeal.text,
        "created_at": appeal.created_at,
        "answer": appeal.answer,
        "decided_at": appeal.decided_at,
        "refund_status": appeal.refund_status,
        "refund_amount": str(int(refund)) if refund is not None else None,
        "refund_amount_spon": earnings.spon_tokens(refund) if refund is not None else None,
        "refund_tx_hash": refund_tx["hash"],
        "refund_tx_url": refund_tx["url"],
        "refund_note": appeal.refund_note,
        "refunded_at": appeal.refunded_at,
    }


def _slash(request: HttpRequest, slash: Slash) -> dict[str, Any]:
    appeal = getattr(slash, "appeal", None)  # the reverse one-to-one raises when there is none
    tx = _tx(slash.chain_tx)
    slashed = slash.amount_slashed
    return {
        "id": slash.id,
        "created_at": slash.created_at,
        "amount": str(int(slash.amount)),
        "amount_spon": earnings.spon_tokens(slash.amount),
        "amount_slashed": str(int(slashed)) if slashed is not None else None,
        "amount_slashed_spon": earnings.spon_tokens(slashed) if slashed is not None else None,
        "status": slash.status,
        "failure_reason": slash.failure_reason,
        "applied_at": slash.applied_at,
        "reason": slash.reason,
        "reference": slash.reference,
        "reason_hash": slash.reason_hash,
        "evidence_type": slash.evidence_type,
        "evidence_id": slash.evidence_id,
        "node_id": slash.node_id,
        "address": slash.address,
        "chain_id": tx["chain_id"],
        "tx_hash": tx["hash"],
        "tx_url": tx["url"],
        "tx_status": tx["status"],
        "can_appeal": appeal is None and slash.status in APPEALABLE,
        "appeal": _appeal(appeal),
        "url": request.build_absolute_uri(reverse("providers:slash", args=[slash.id])),
    }


def _slashes(provider: ProviderProfile):
    return Slash.objects.filter(provider=provider).select_related("chain_tx__chain", "appeal__refund_tx__chain")


def _evidence(slash: Slash) -> dict[str, Any]:
    found = slash_evidence(slash)
    node, meter = found.get("node"), found.get("meter")
    return {
        "kind": found["kind"],
        "node_id": node.id if node is not None else None,
        "node_name": node.name if node is not None else None,
        "lease_meter": {
            "lease_id": meter.reference_id,
            "started_at": meter.started_at,
            "price_per_hour": exact_usd(meter.price_per_hour),
            "closed_at": meter.closed_at,
            "charged": exact_usd(meter.charged),
        }
        if meter is not None
        else None,
        "node_events": [
            {"at": event.at, "kind": event.kind, "message": event.message} for event in found.get("events", [])
        ],
        "era_start": found.get("era_start"),
        "era_end": found.get("era_end"),
        "failed_challenges": [
            {
                "id": challenge.public_id,
                "issued_at": challenge.issued_at,
                "answered_at": challenge.answered_at,
                "status": challenge.status,
                "failure_reason": challenge.failure_reason,
                "expected": challenge.expected,
                "measured": challenge.measured,
            }
            for challenge in found.get("challenges", [])
        ],
    }


@router.get(
    "/slashes",
    response={200: SlashPageOut, **ERRORS},
    operation_id="provider_slashes",
    summary="Your slashes with their status, transaction and appeal, newest first",
)
def slashes_list(request: HttpRequest, limit: int = PAGE_LIMIT, cursor: str | None = PAGE_CURSOR):
    """The stake page's slashes as JSON, by cursor. Not a provider: 403."""
    page, next_cursor = _keyset(_slashes(_profile(request)), cursor, limit)
    return {"items": [_slash(request, slash) for slash in page], "next_cursor": next_cursor}


@router.get(
    "/slashes/{slash_id}",
    response={200: SlashDetailOut, **ERRORS},
    operation_id="provider_slash",
    summary="One of your slashes with the evidence it was decided on",
)
def slash_get(request: HttpRequest, slash_id: int = SlashId):
    """The slash's page as JSON: for a lease, its meter and the node's events over the downtime; for
    a liveness challenge, the era's failed challenges. Another provider's slash: 404."""
    provider = _profile(request)
    get_slash_for_provider(provider=provider, slash_id=slash_id)  # 404 for another's
    slash = _slashes(provider).select_related("node").get(id=slash_id)
    return {**_slash(request, slash), "evidence": _evidence(slash)}


@router.post(
    "/slashes/{slash_id}/appeal",
    response={201: SlashOut, **ERRORS},
    operation_id="provider_slash_appeal",
    summary="Appeal one of your applied slashes (once)",
)
def slash_appeal(request: HttpRequest, payload: AppealIn, slash_id: int = SlashId):
    """As the stake page's appeal form: your own slash (another's: 404), applied (else 409), not
    appealed yet (409), with a text of 1 to 2,000 characters (400 naming `text`). An admin upholds
    (what was slashed comes back) or dismisses it with an answer; GET /provider/slashes shows it.
    Answers the slash with its new appeal."""
    provider = _profile(request)
    appeal_create(provider=provider, slash_id=slash_id, text=payload.text)
    return Status(201, _slash(request, _slashes(provider).get(id=slash_id)))
