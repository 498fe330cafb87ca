"""`GET /api/v1/provider/rewards`: a provider's era rewards, their receipts and the current claim
(providers.reward_claims). Provider auth as the other /api/v1/provider routes (session or API key)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from ninja import Field, Query, Router
from pydantic import BaseModel

from accounts.auth import api_auth
from core.money import exact_usd
from core.schemas import ERRORS
from providers.reward_claims import MAX_ERAS, onchain_era_of, provider_rewards, spon_text
from providers.services import get_provider_for_user

router = Router(tags=["provider"], auth=api_auth)


class RewardsQuery(BaseModel):
    limit: int = Field(10, ge=1, le=MAX_ERAS, description=f"Eras per page, newest first (1–{MAX_ERAS}, default 10)")
    offset: int = Field(0, ge=0, le=1_000_000, description="Eras to skip (for the next page: offset + limit)")


class ReceiptOut(BaseModel):
    node_id: int
    node_name: str
    points: str
    spon: str = Field(description="$SPON base units (18 decimals), as a decimal string")
    spon_usd: str = Field(description="The $SPON valued at the era's rate, USD with 6 decimals")
    address: str = Field(description="The stake address this reward went to; empty until the tree includes it")
    receipt: dict[str, Any] = Field(description="Every term and its inputs (spheron_sdk.rewards.reward_recompute)")


class EraOut(BaseModel):
    started_at: str
    ended_at: str
    points: str
    spon: str = Field(description="$SPON base units of the provider's nodes in the era")
    spon_usd: str
    floor_topup_usd: str
    receipts: list[ReceiptOut]


class TreeOut(BaseModel):
    root: str
    era_started_at: str
    onchain_era: int | None
    published_at: str | None
    url: str = Field(description="The published tree (JSON), to rebuild the root")


class RewardsOut(BaseModel):
    address: str = Field(description="The provider's current stake address (empty: none linked, nothing to claim)")
    chain_id: int | None
    distributor: str = Field(description="RewardDistributor's address (empty: claims are off here)")
    tree: TreeOut | None = Field(description="The latest published tree (null: none yet)")
    cumulative: str = Field(description="The address's cumulative $SPON (base units) in that tree")
    proof: list[str] = Field(description="Its Merkle proof: claim(address, cumulative, proof)")
    claimed: str | None = Field(description="Paid to the address already (base units); null: the chain did not answer")
    claimable: str | None = Field(description="cumulative − claimed (base units); null if claimed is unknown")
    claimable_spon: str | None = Field(description="The same in whole $SPON")
    claimable_usd: str | None = Field(description="At the current $SPON rate; null without a rate")
    note: str = Field(description="Why a figure is missing, if one is")
    earned: str = Field(description="Σ $SPON of every era (base units), published or not")
    unassigned: str = Field(description="$SPON waiting for a stake address (base units)")
    other_addresses: list[str] = Field(description="Earlier stake addresses that rewards went to (claimable there)")
    era_count: int
    limit: int
    offset: int
    eras: list[EraOut]


@router.get(
    "/rewards",
    response={200: RewardsOut, **ERRORS},
    operation_id="provider_rewards",
    summary="The provider's era rewards with receipts, and the current claim with its proof",
)
def rewards(request: HttpRequest, query: Query[RewardsQuery]):
    """Eras newest first, `limit` (default 10, at most 90) from `offset`, each with every node's
    receipt; then the claim of the current stake address against the latest published rewards tree:
    the cumulative amount, the proof, what RewardDistributor paid already and what is claimable.
    Amounts of $SPON are base units (18 decimals) as decimal strings. A user who is not a provider:
    403."""
    provider = get_provider_for_user(request.auth)  # type: ignore[arg-type]
    data = provider_rewards(provider, limit=query.limit, offset=query.offset)
    tree = data["tree"]
    claimable = data["claimable"]
    return {
        "address": data["address"],
        "chain_id": data["chain"].chain_id if data["chain"] is not None else None,
        "distributor": data["distributor"],
        "tree": None
        if tree is None
        else {
            "root": tree.root,
            "era_started_at": tree.era.started_at.isoformat(),
            "onchain_era": onchain_era_of(tree.chain_tx),
            "published_at": tree.published_at.isoformat() if tree.published_at else None,
            "url": request.build_absolute_uri(reverse("rewards:tree", args=[tree.root])),
        },
        "cumulative": str(data["cumulative"]),
        "proof": data["proof"],
        "claimed": None if data["claimed"] is None else str(data["claimed"]),
        "claimable": None if claimable is None else str(claimable),
        "claimable_spon": None if claimable is None else spon_text(claimable),
        "claimable_usd": None if data["claimable_usd_micros"] is None else exact_usd(data["claimable_usd_micros"]),
        "note": data["note"],
        "earned": str(data["earned"]),
        "unassigned": str(data["unassigned"]),
        "other_addresses": data["other_addresses"],
        "era_count": data["era_count"],
        "limit": data["limit"],
        "offset": data["offset"],
        "eras": [
            {
                "started_at": era["started_at"].isoformat(),
                "ended_at": era["ended_at"].isoformat(),
                "points": str(era["points"]),
                "spon": str(era["spon"]),
                "spon_usd": exact_usd(era["spon_usd_micros"]),
                "floor_topup_usd": exact_usd(era["floor_topup_micros"]),
                "receipts": [
                    {
                        "node_id": receipt["node_id"],
                        "node_name": receipt["node_name"],
                        "points": str(receipt["points"]),
                        "spon": str(receipt["spon"]),
                        "spon_usd": exact_usd(receipt["spon_usd_micros"]),
                        "address": receipt["address"],
                        "receipt": receipt["receipt"],
                    }
                    for receipt in era["receipts"]
                ],
            }
            for era in data["eras"]
        ],
    }
