"""The rewards claim page (/provider/rewards/) and the published rewards trees (/rewards/tree.json,
/rewards/trees/<root>.json). Reads only: providers.reward_claims does the work."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from core.money import format_usd
from providers.models import SPON_DECIMALS, ProviderProfile
from providers.reward_claims import (
    claim_calldata,
    latest_published_tree,
    onchain_era_of,
    provider_rewards,
    published_tree_by_root,
    spon_text,
    tree_document,
)
from providers.views import provider_required, spon

ERAS_PER_PAGE = 10


def _spon(base_units: int | None) -> str:
    """Whole $SPON for people, at most 6 decimals (truncated: never more than there is); the
    exact figures are in the API and the published tree."""
    if base_units is None:
        return ""
    return spon(Decimal(int(base_units)).scaleb(-SPON_DECIMALS).quantize(Decimal("0.000001"), rounding=ROUND_DOWN))


def _offset(request: HttpRequest) -> int:
    text = request.GET.get("offset", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 7 else 0


@provider_required
def rewards_page(request: HttpRequest, provider: ProviderProfile) -> HttpResponse:
    data = provider_rewards(provider, limit=ERAS_PER_PAGE, offset=_offset(request))
    tree, chain = data["tree"], data["chain"]
    claimable = data["claimable"]
    can_claim = bool(
        data["address"]
        and tree is not None
        and data["distributor"]
        and chain is not None
        and data["cumulative"] > 0
        and (claimable is None or claimable > 0)
    )
    context: dict[str, Any] = {
        "provider": provider,
        "data": data,
        "tree": tree,
        "tree_url": reverse("rewards:tree", args=[tree.root]) if tree is not None else "",
        "onchain_era": onchain_era_of(tree.chain_tx) if tree is not None else None,
        "set_root_url": tree.chain_tx.chain.explorer_url(tree.chain_tx.tx_hash) if tree and tree.chain_tx else "",
        "cumulative_display": _spon(data["cumulative"]),
        "claimed_display": _spon(data["claimed"]),
        "claimable_display": _spon(claimable),
        "claimable_exact": spon_text(claimable) if claimable is not None else "",
        "claimable_usd": format_usd(data["claimable_usd_micros"]) if data["claimable_usd_micros"] is not None else "",
        "earned_display": _spon(data["earned"]),
        "unassigned_display": _spon(data["unassigned"]),
        "nothing_to_claim": bool(data["address"] and tree is not None and claimable == 0),
        "can_claim": can_claim,
        "chain_id_hex": hex(chain.chain_id) if chain is not None and chain.chain_id else "",
        "chain_name": chain.name if chain is not None else "",
        "calldata": claim_calldata(address=data["address"], cumulative=data["cumulative"], proof=data["proof"])
        if can_claim
        else "",
        "eras": [
            {
                **era,
                "spon_display": _spon(era["spon"]),
                "usd_display": format_usd(era["spon_usd_micros"]),
                "receipts": [{**item, "spon_display": _spon(item["spon"])} for item in era["receipts"]],
            }
            for era in data["eras"]
        ],
        "newer_offset": max(0, data["offset"] - ERAS_PER_PAGE) if data["offset"] else None,
        "older_offset": data["offset"] + ERAS_PER_PAGE if data["offset"] + ERAS_PER_PAGE < data["era_count"] else None,
    }
    return render(request, "providers/rewards.html", context)


def _not_found(message: str) -> JsonResponse:
    return JsonResponse({"message": message, "extra": {}}, status=404)


def _tree_response(tree) -> JsonResponse:
    response = JsonResponse(tree_document(tree), json_dumps_params={"indent": 2})
    response["Access-Control-Allow-Origin"] = "*"  # public data: anyone's tool may fetch it
    return response


@require_safe
def tree_latest(request: HttpRequest) -> JsonResponse:
    """The latest published rewards tree: the one whose root RewardDistributor holds."""
    tree = latest_published_tree()
    if tree is None:
        return _not_found("No rewards tree has been published yet: the first one comes after an era with rewards.")
    return _tree_response(tree)


@require_safe
def tree_by_root(request: HttpRequest, root: str) -> JsonResponse:
    """A published rewards tree by its root (0x and 64 hex digits)."""
    tree = published_tree_by_root(root)
    if tree is None:
        return _not_found(f"No published rewards tree has the root {root[:80]!r}.")
    return _tree_response(tree)
