"""Scoring inputs: the candidates' snapshot as the match proof publishes it (price, uptime, tier,
stake, slashes, distance, fit), the order's seed and the configured weights. The scores themselves
are spheron_sdk.matching's, so that anyone can recompute them."""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from spheron_sdk import matching

from marketplace.models import Order
from providers.capacity import Request, placeholders, query
from providers.models import ProviderProfile, Region


def _distance_km(a: Region, b: Region) -> int:
    lat1, lon1, lat2, lon2 = map(math.radians, map(float, (a.latitude, a.longitude, b.latitude, b.longitude)))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return round(2 * 6371 * math.asin(math.sqrt(h)))


def _fit(row: dict[str, Any], request: Request) -> Decimal:
    """How snugly the request fills what is free (1 = exactly), so big boxes stay whole for big orders."""
    pairs = [
        (request.cpu_cores, row["available_cpu_cores"]),
        (request.memory_gb, row["available_memory_gb"]),
    ]
    if request.gpu_units:
        pairs.append((request.gpu_units, row["available_gpus"]))
    ratios = [Decimal(need) / Decimal(free) for need, free in pairs if free]
    return (sum(ratios, Decimal(0)) / len(ratios)).quantize(matching.PLACES) if ratios else Decimal(1)


@dataclass(frozen=True)
class ProviderFacts:
    stake: int  # staked $SPON, base units
    slashes: int
    user_id: int  # who the lease's meter pays
    name: str


def provider_facts(provider_ids: set[int]) -> dict[int, ProviderFacts]:
    """The candidates' providers in one query: stake and past slashes (scoring inputs; the count is
    kept on the profile by `stake_record`), the user a lease pays and the name its timeline shows.
    In SQL for the reason given in providers.capacity."""
    if not provider_ids:
        return {}
    ids = sorted(provider_ids)
    rows = query(
        "SELECT p.id, p.staked_spon, p.slash_count, p.user_id, p.display_name "
        f"FROM {ProviderProfile._meta.db_table} p WHERE p.id IN ({placeholders(ids)})",
        ids,
    )
    return {id_: ProviderFacts(int(stake), slashes, user_id, name) for id_, stake, slashes, user_id, name in rows}


def regions_needed(rows: list[dict[str, Any]], request: Request) -> set[str]:
    """Regions whose coordinates the proximity factor needs: only when the order names several."""
    if request.regions and len(request.regions) > 1:
        return {row["region_id"] for row in rows} | {request.regions[0]}
    return set()


def snapshot(
    rows: list[dict[str, Any]],
    request: Request,
    *,
    providers: dict[int, ProviderFacts] | None = None,
    regions: dict[str, Region] | None = None,
) -> list[dict[str, Any]]:
    """The candidates' raw inputs, as published in the match proof."""
    if providers is None:
        providers = provider_facts({row["provider_id"] for row in rows})
    if regions is None:
        codes = regions_needed(rows, request)
        regions = {r.code: r for r in Region.objects.filter(code__in=codes)} if codes else {}
    preferred = regions.get(request.regions[0]) if request.regions and len(request.regions) > 1 else None
    none = ProviderFacts(0, 0, 0, "")
    candidates = []
    for row in rows:
        provider = providers.get(row["provider_id"], none)
        candidates.append(
            {
                "node_id": row["id"],
                "provider_id": row["provider_id"],
                "region": row["region_id"],
                "price_per_hour_micros": int(row["lease_price"]),
                "uptime_30d": str(Decimal(str(row["uptime_30d"])).quantize(matching.PLACES)),
                "trust_tier": row["trust_tier"],
                "slashes": provider.slashes,
                "stake": str(provider.stake),
                "distance_km": _distance_km(regions[row["region_id"]], preferred) if preferred else None,
                "fit": str(_fit(row, request)),
            }
        )
    return candidates


def order_seed(order: Order) -> str:
    key = (settings.MATCH_SEED_SECRET or f"match-seed:{settings.SECRET_KEY}").encode()
    message = f"order:{order.id}:attempt:{order.attempt}:spec:{order.deployment.spec_hash}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def weights() -> dict[str, str]:
    return {name: str(value) for name, value in settings.MATCH_WEIGHTS.items()}
