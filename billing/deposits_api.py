"""/api/v1/chains and /api/v1/billing/deposits: where and how to pay in crypto, the user's
deposits, and a pasted transaction checked at once. Session or API key auth. chain records the
deposits; billing shows them (chain has no API of its own)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.http import HttpRequest
from ninja import Query, Router
from pydantic import BaseModel, ConfigDict, Field, field_validator

from accounts.auth import api_auth
from accounts.models import User
from billing import deposits as billing_deposits
from chain import rates
from chain.models import Chain, Deposit
from chain.selectors import chains_enabled, deposit_page
from chain.services import deposit_check, reference_for
from core.money import exact_usd, exact_usd_or_none
from core.schemas import ERRORS, ErrorOut

chains_router = Router(tags=["chains"], auth=api_auth)
router = Router(tags=["billing"], auth=api_auth)


def _user(request: HttpRequest) -> User:
    return request.auth  # type: ignore[attr-defined, return-value]


class TokenOut(BaseModel):
    symbol: str
    address: str = Field(description="Contract address; empty for the chain's native token")
    decimals: int
    fee_bps: int = Field(description="Fee in basis points (200 = 2%); 0 in $SPON")


class ChainOut(BaseModel):
    key: str
    chain_id: int | None = Field(description="EIP-155 chain id; null for Solana")
    name: str
    kind: str
    native_symbol: str
    decimals: int
    finality: int = Field(description="Confirmations before a deposit is credited")
    finality_commitment: str = Field(description='Solana: the commitment counted as final ("finalized")')
    rpc_url: str = Field(description="Public RPC URL")
    receiver_address: str
    treasury_address: str
    tokens: list[TokenOut]


def _tokens(chain: Chain) -> list[dict]:
    return [
        {"symbol": t.symbol, "address": t.address, "decimals": t.decimals, "fee_bps": t.fee_bps}
        for t in chain.tokens.all()
    ]


@chains_router.get("/chains", response={200: list[ChainOut], **ERRORS}, operation_id="chains_list", summary="Chains")
def chains_list(request: HttpRequest):
    """The chains that take deposits now, with their accepted tokens."""
    return [
        {
            "key": chain.key,
            "chain_id": chain.chain_id,
            "name": chain.name,
            "kind": chain.kind,
            "native_symbol": chain.native_symbol,
            "decimals": chain.native_decimals,
            "finality": chain.finality,
            "finality_commitment": chain.finality_commitment,
            "rpc_url": chain.rpc_url,
            "receiver_address": chain.receiver_address,
            "treasury_address": chain.treasury_address,
            "tokens": _tokens(chain),
        }
        for chain in chains_enabled()
    ]


class TokenInstructionOut(TokenOut):
    rate_usd: str | None = Field(description="USD per whole token, exact decimal; null when there is no current quote")
    rate_at: datetime | None = Field(description="When the rate was true")
    no_quote_reason: str = Field(description="Why there is no quote (a stale or missing rate); empty otherwise")


class ChainInstructionOut(BaseModel):
    key: str
    chain_id: int | None
    name: str
    kind: str
    receiver_address: str = Field(description="EVM: call deposit(reference) or depositToken(token, amount, reference)")
    treasury_address: str = Field(description="Solana: send SOL here with the reference in a Memo")
    finality: int
    minimum_usd: str
    minimum_usd_micros: int
    tokens: list[TokenInstructionOut]


class InstructionsOut(BaseModel):
    reference: str = Field(description="Your deposit reference: 0x and 64 hex digits (bytes32)")
    chains: list[ChainInstructionOut]


@router.get(
    "/instructions",
    response={200: InstructionsOut, **ERRORS},
    operation_id="billing_deposits_instructions",
    summary="How to top up in crypto",
)
def deposits_instructions(request: HttpRequest):
    """Your reference and, per chain and token: where to pay, the current rate, the fee, the minimum."""
    reference = reference_for(_user(request)).ref
    quotes: dict[str, rates.QuoteResult] = {}
    chains = []
    for chain in chains_enabled():
        tokens = []
        for token in chain.tokens.all():
            if token.symbol not in quotes:
                quotes[token.symbol] = rates.quote_or_reason(token.symbol)
            result = quotes[token.symbol]
            tokens.append(
                {
                    **_tokens_one(token),
                    "rate_usd": _decimal(result.quote.usd_per_unit) if result.quote else None,
                    "rate_at": result.quote.at if result.quote else None,
                    "no_quote_reason": result.reason,
                }
            )
        chains.append(
            {
                "key": chain.key,
                "chain_id": chain.chain_id,
                "name": chain.name,
                "kind": chain.kind,
                "receiver_address": chain.receiver_address,
                "treasury_address": chain.treasury_address,
                "finality": chain.finality,
                "minimum_usd": exact_usd(chain.min_deposit_usd_micros),
                "minimum_usd_micros": chain.min_deposit_usd_micros,
                "tokens": tokens,
            }
        )
    return {"reference": reference, "chains": chains}


def _tokens_one(token) -> dict:
    return {"symbol": token.symbol, "address": token.address, "decimals": token.decimals, "fee_bps": token.fee_bps}


class DepositOut(BaseModel):
    id: int
    chain: str
    tx_hash: str
    log_index: int
    explorer_url: str
    token: str | None = Field(description="Symbol; null for a token that is not accepted")
    amount: str = Field(description="Base units (wei, lamports…), exact")
    status: str = Field(description="seen, confirming, final, credited, reorged, below_minimum, unmatched, refunded")
    confirmations: int
    finality: int
    usd_rate: str | None = Field(description="USD per whole token recorded when the deposit was first seen")
    gross_usd: str | None
    fee_usd: str | None
    credit_usd: str | None
    seen_at: datetime
    credited_at: datetime | None


class DepositPageOut(BaseModel):
    items: list[DepositOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


def _decimal(value: Decimal) -> str:
    return f"{value.normalize():f}"  # 3000, not 3E+3


def _deposit_item(deposit: Deposit) -> dict:
    return {
        "id": deposit.id,
        "chain": deposit.chain.key,
        "tx_hash": deposit.tx_hash,
        "log_index": deposit.log_index,
        "explorer_url": deposit.chain.explorer_url(deposit.tx_hash),
        "token": deposit.token.symbol if deposit.token_id else None,
        "amount": f"{deposit.amount:f}",
        "status": deposit.status,
        "confirmations": min(deposit.confirmations, deposit.chain.finality),
        "finality": deposit.chain.finality,
        "usd_rate": _decimal(deposit.usd_rate) if deposit.usd_rate is not None else None,
        "gross_usd": exact_usd_or_none(deposit.usd_micros),
        "fee_usd": exact_usd_or_none(deposit.fee_micros),
        "credit_usd": exact_usd_or_none(deposit.credit_micros),
        "seen_at": deposit.seen_at,
        "credited_at": deposit.credited_at,
    }


@router.get("", response={200: DepositPageOut, **ERRORS}, operation_id="billing_deposits_list", summary="Your deposits")
def deposits_list(
    request: HttpRequest,
    limit: int = Query(50, ge=1, le=200, description="Items per page, at most 200"),
    cursor: str | None = Query(None, max_length=200, description="next_cursor from the previous page"),
):
    """Your crypto deposits, newest first, with their state, by cursor."""
    page = deposit_page(user=_user(request), limit=limit, cursor=cursor)
    return {"items": [_deposit_item(d) for d in page.rows], "next_cursor": page.next_cursor}


class DepositCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chain: str = Field(min_length=1, max_length=20, description='A chain key, e.g. "arbitrum"')
    tx_hash: str = Field(min_length=1, max_length=100, description="The transaction hash")

    @field_validator("chain", "tx_hash", mode="before")
    @classmethod
    def _text(cls, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if "\x00" in value:
            raise ValueError("must not contain NUL bytes")
        return value.strip()


class DepositCheckOut(BaseModel):
    items: list[DepositOut]
    yours: list[bool] = Field(description="Per item: whether it is credited (or to be credited) to you")


@router.post(
    "/check",
    response={200: DepositCheckOut, 503: ErrorOut, **ERRORS},
    operation_id="billing_deposits_check",
    summary="Check a transaction now",
)
def deposits_check(request: HttpRequest, body: DepositCheckIn):
    """Reads the transaction from the chain at once (instead of waiting for the watcher); a final
    deposit is credited before this returns."""
    found = deposit_check(chain_key=body.chain, tx_hash=body.tx_hash)
    billing_deposits.deposits_credit_final()  # already run by the hook when some became final; cheap
    found = list(Deposit.objects.filter(id__in=[d.id for d in found]).select_related("chain", "token"))
    user = _user(request)
    # Another user's deposit shows its state (public on chain) but not whose it is.
    return {"items": [_deposit_item(d) for d in found], "yours": [d.user_id == user.id for d in found]}
