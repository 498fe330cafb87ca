"""The matchmaker: candidates in SQL, scores in Python (spheron_sdk.matching), a conditional
update that reserves capacity, a lease at the locked price, and a commitment anyone can check.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from spheron_sdk import matching

from marketplace.models import (
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    Lease,
    MatchRecord,
    Order,
    OrderStatus,
)
from providers.models import GpuModel, Node, NodeStatus, ProviderProfile, Region, StakeEvent, StakeEventKind
from providers.pricing import node_price_per_hour_micros
from spheron_web import clock
from spheron_web.money import HOURS_PER_MONTH, format_usd

MAX_RESERVE_ATTEMPTS = 5


@dataclass
class Request:
    """What the matchmaker needs from a normalised spec."""

    mode: str
    tiers: list[int]
    cpu_cores: int
    memory_gb: int
    storage_gb: int
    gpu_units: int
    gpu_models: list[str]
    min_vram_gb: int
    max_price_per_hour_micros: int
    regions: list[str]
    region_exclude: list[str]
    desired_provider: str
    provider_exclude: list[str]
    node: int | None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Request:
        return cls(**{name: spec.get(name) for name in cls.__dataclass_fields__})


def lease_price(node: Node, request: Request) -> int:
    """The same price in Python: the node's per-resource prices for the requested share."""
    return node_price_per_hour_micros(
        gpu_count=request.gpu_units,
        gpu_price_per_hour_micros=node.gpu_price_per_hour_micros,
        cpu_cores=request.cpu_cores,
        cpu_price_per_core_month_micros=node.cpu_price_per_core_month_micros,
        memory_gb=request.memory_gb,
        memory_price_per_gb_month_micros=node.memory_price_per_gb_month_micros,
        storage_gb=request.storage_gb,
        storage_price_per_gb_month_micros=node.storage_price_per_gb_month_micros,
    )


def _placeholders(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def _price_sql(request: Request) -> tuple[str, list[int]]:
    """Hourly price of the requested share of a node, in micro-USD: the integer arithmetic of
    providers.pricing (GPUs per hour; CPU, memory and storage per month over 730 hours, rounded
    half-up once), in SQL."""
    return (
        "(%s * n.gpu_price_per_hour_micros + (2 * (%s * n.cpu_price_per_core_month_micros"
        " + %s * n.memory_price_per_gb_month_micros + %s * n.storage_price_per_gb_month_micros) + %s) / %s)",
        [
            request.gpu_units, request.cpu_cores, request.memory_gb, request.storage_gb,
            HOURS_PER_MONTH, 2 * HOURS_PER_MONTH,
        ],
    )  # fmt: skip


def _provider_sql(values: list[str]) -> tuple[str, list]:
    """Providers named by id or by display name."""
    ids = [int(v) for v in values if str(v).isdigit()]
    names = [v for v in values if not str(v).isdigit()]
    parts, params = [], []
    if ids:
        parts.append(f"n.provider_id IN ({_placeholders(ids)})")
        params += ids
    if names:
        profiles = ProviderProfile._meta.db_table
        parts.append(f"n.provider_id IN (SELECT id FROM {profiles} WHERE display_name IN ({_placeholders(names)}))")
        params += names
    return "(" + " OR ".join(parts) + ")", params


def _node_filters(
    request: Request, *, excluded: list[int] = (), with_price: bool = True, gpu_model: str | None = None
) -> tuple[list[str], list]:
    """Every filter of the order as SQL conditions on `n` (the node table) and their parameters.

    Written out rather than built with the ORM: building and compiling this query through the ORM
    cost 1.8 ms of CPU, 5-10 times what PostgreSQL takes to run it. The first four conditions are
    the "listed" predicate of the partial indexes (providers.models.LISTED), written as they are so
    that the planner can use them. `gpu_model`: one model of the order's, whose kind the caller
    checked; without it a GPU order is limited to discrete GPUs here.
    """
    where = [
        f"n.status = '{NodeStatus.ONLINE.value}'", "NOT n.in_maintenance", "n.stake_covered", "n.available_gpus > 0",
        "n.mode = %s", f"n.trust_tier IN ({_placeholders(request.tiers)})", "n.available_cpu_cores >= %s",
        "n.available_memory_gb >= %s", "n.available_storage_gb >= %s",
    ]  # fmt: skip
    params: list = [request.mode, *request.tiers, request.cpu_cores, request.memory_gb, request.storage_gb]
    if gpu_model is not None:
        where += ["n.available_gpus >= %s", "n.gpu_model_id = %s"]
        params += [max(request.gpu_units, 1), gpu_model]
    else:
        if request.gpu_units:
            gpu_models = GpuModel._meta.db_table
            where += ["n.available_gpus >= %s", f"n.gpu_model_id IN (SELECT slug FROM {gpu_models} WHERE kind = %s)"]
            params += [request.gpu_units, GpuModel.Kind.GPU.value]
        if request.gpu_models:
            where.append(f"n.gpu_model_id IN ({_placeholders(request.gpu_models)})")
            params += request.gpu_models
    if request.min_vram_gb:
        where.append("n.vram_gb >= %s")
        params.append(request.min_vram_gb)
    if request.region_exclude:
        where.append(f"n.region_id NOT IN ({_placeholders(request.region_exclude)})")
        params += request.region_exclude
    if request.desired_provider:
        condition, values = _provider_sql([request.desired_provider])
        where.append(condition)
        params += values
    if request.provider_exclude:
        condition, values = _provider_sql(request.provider_exclude)
        where.append("NOT " + condition)
        params += values
    if request.node:
        where.append("n.id = %s")
        params.append(request.node)
    if excluded:
        where.append(f"n.id NOT IN ({_placeholders(list(excluded))})")
        params += list(excluded)
    if with_price:
        price, values = _price_sql(request)
        where.append(f"{price} <= %s")
        params += [*values, request.max_price_per_hour_micros]
    return where, params


def _query(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


CANDIDATE_FIELDS = (
    "id", "provider_id", "region_id", "gpu_model_id", "is_simulated", "lease_price", "gpu_price_per_hour_micros",
    "price_per_hour_micros", "uptime_30d", "trust_tier", "available_gpus", "available_cpu_cores",
    "available_memory_gb", "available_storage_gb",
)  # fmt: skip
REFERENCE_DATA_SECONDS = 300
_gpu_kinds: tuple[float, dict[str, str]] = (-math.inf, {})


def gpu_model_kinds() -> dict[str, str]:
    """Slug → kind of every GPU model. Reference data (providers/reference): read once per process
    and again after REFERENCE_DATA_SECONDS, not joined into every candidate query."""
    global _gpu_kinds
    loaded_at, kinds = _gpu_kinds
    if time.monotonic() - loaded_at > REFERENCE_DATA_SECONDS:
        kinds = dict(GpuModel.objects.values_list("slug", "kind"))
        _gpu_kinds = (time.monotonic(), kinds)
    return kinds


def candidate_rows(request: Request, *, excluded: list[int] = ()) -> list[dict[str, Any]]:
    """The cheapest MATCH_CANDIDATE_LIMIT nodes that pass every filter, in the requested regions.

    A GPU order naming its models sends one query per model (each walks the index
    node_listed_model_gpu_hour in price order and stops at the limit), merged here: PostgreSQL
    cannot merge ordered index scans over an IN list, so one query for several models fetched and
    sorted every listed node of those models. A model that is not a discrete GPU matches nothing.
    """
    if not request.tiers:
        return []
    if request.gpu_units and request.gpu_models:
        kinds = gpu_model_kinds()
        models = [m for m in dict.fromkeys(request.gpu_models) if kinds.get(m) == GpuModel.Kind.GPU]
        rows = [row for model in models for row in _candidates(request, excluded=excluded, gpu_model=model)]
        if len(models) > 1:
            rows.sort(key=lambda row: (row["gpu_price_per_hour_micros"], row["id"]))
        return rows[: settings.MATCH_CANDIDATE_LIMIT]
    return _candidates(request, excluded=excluded)


def _candidates(request: Request, *, excluded: list[int], gpu_model: str | None = None) -> list[dict[str, Any]]:
    where, params = _node_filters(request, excluded=excluded, gpu_model=gpu_model)
    if request.regions:
        where.append(f"n.region_id IN ({_placeholders(request.regions)})")
        params += request.regions
    price, price_params = _price_sql(request)
    sort = "n.gpu_price_per_hour_micros" if request.gpu_units else "n.price_per_hour_micros"
    columns = ", ".join(price if name == "lease_price" else f"n.{name}" for name in CANDIDATE_FIELDS)
    sql = f"SELECT {columns} FROM {Node._meta.db_table} n WHERE {' AND '.join(where)} ORDER BY {sort}, n.id LIMIT %s"
    rows = _query(sql, [*price_params, *params, settings.MATCH_CANDIDATE_LIMIT])
    return [dict(zip(CANDIDATE_FIELDS, row, strict=True)) for row in rows]


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
    """The candidates' providers in one query: stake and past slashes (scoring inputs), the user a
    lease pays and the name its timeline shows. In SQL for the reason given in `_node_filters`; the
    slashes are counted per provider through the stake events' provider index (a join and GROUP BY
    over every stake event took 3-5 times as long)."""
    if not provider_ids:
        return {}
    ids = sorted(provider_ids)
    rows = _query(
        f"SELECT p.id, p.staked_spon, (SELECT count(*) FROM {StakeEvent._meta.db_table} e "
        "WHERE e.provider_id = p.id AND e.kind = %s), p.user_id, p.display_name "
        f"FROM {ProviderProfile._meta.db_table} p WHERE p.id IN ({_placeholders(ids)})",
        [StakeEventKind.SLASH.value, *ids],
    )
    return {id_: ProviderFacts(int(stake), slashes, user_id, name) for id_, stake, slashes, user_id, name in rows}


def snapshot(
    rows: list[dict[str, Any]], request: Request, *, providers: dict[int, ProviderFacts] | None = None
) -> list[dict[str, Any]]:
    """The candidates' raw inputs, as published in the match proof."""
    if providers is None:
        providers = provider_facts({row["provider_id"] for row in rows})
    regions = {}
    if request.regions and len(request.regions) > 1:
        codes = {row["region_id"] for row in rows} | {request.regions[0]}
        regions = {r.code: r for r in Region.objects.filter(code__in=codes)}
    preferred = regions.get(request.regions[0]) if regions else None
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


def _reserve(node_id: int, request: Request) -> bool:
    """Take the capacity if it is still free: one conditional UPDATE, so two workers never both get
    it. (In SQL: the ORM spent more CPU building it than PostgreSQL spends running it.)"""
    need = [request.gpu_units, request.cpu_cores, request.memory_gb, request.storage_gb]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Node._meta.db_table} SET available_gpus = available_gpus - %s, "
            "available_cpu_cores = available_cpu_cores - %s, available_memory_gb = available_memory_gb - %s, "
            "available_storage_gb = available_storage_gb - %s "
            "WHERE id = %s AND status = %s AND NOT in_maintenance AND available_gpus >= %s "
            "AND available_cpu_cores >= %s AND available_memory_gb >= %s AND available_storage_gb >= %s",
            [*need, node_id, NodeStatus.ONLINE.value, max(request.gpu_units, 0), *need[1:]],
        )
        return cursor.rowcount == 1


@dataclass
class MatchOutcome:
    status: str  # matched | waiting | failed | skipped
    lease: Lease | None = None
    reason: str = ""


def match_order(*, order_id: int, now: datetime | None = None) -> MatchOutcome:
    """Match one open order. Safe to run in several workers at once.

    One transaction: the order and its deployment are claimed with FOR UPDATE SKIP LOCKED (a
    worker already on it, or a close in progress, makes this call a no-op), then the capacity is
    reserved, the match recorded and the lease started, all committed together. A worker that dies
    leaves nothing behind: its locks go with its connection and the order is still open. An error
    rolls everything back, the order with it.
    """
    from marketplace import deployments

    with transaction.atomic():
        order = (
            Order.objects.select_related("deployment", "deployment__hold")
            .select_for_update(skip_locked=True, of=("self", "deployment"))
            .filter(id=order_id, status=OrderStatus.OPEN)
            .first()
        )
        if order is None:
            return MatchOutcome("skipped")
        now = now or clock.now()
        request = Request.from_spec(order.deployment.spec)
        rows = candidate_rows(request, excluded=order.excluded_node_ids)
        providers = provider_facts({row["provider_id"] for row in rows})
        candidates = snapshot(rows, request, providers=providers)
        seed = order_seed(order)
        chosen = weights()
        for _attempt in range(MAX_RESERVE_ATTEMPTS):
            if not candidates:
                break
            scored = matching.score_candidates(candidates, chosen, seed)
            winner = scored[0]["node_id"]
            if not _reserve(winner, request):
                # Taken by another order meanwhile: it was not available, so it leaves the proof.
                candidates = [c for c in candidates if c["node_id"] != winner]
                continue
            document = matching.match_document(
                order_id=order.id, spec_hash=order.deployment.spec_hash, candidates=candidates,
                weights=chosen, seed=seed, winner=winner,
            )  # fmt: skip
            record = MatchRecord.objects.create(
                order=order,
                seed=seed,
                weights=chosen,
                candidates=candidates,
                scores=scored[:10],
                winner_node_id=winner,
                commitment=matching.commitment(document),
                candidate_count=len(candidates),
                created_at=now,
            )
            row = next(row for row in rows if row["id"] == winner)
            provider = providers[row["provider_id"]]
            placement = deployments.Placement(
                node_id=winner,
                gpu_model_id=row["gpu_model_id"],
                region_id=row["region_id"],
                is_simulated=row["is_simulated"],
                provider_name=provider.name,
                payee_id=provider.user_id,
            )
            price = next(c["price_per_hour_micros"] for c in candidates if c["node_id"] == winner)
            lease = deployments.lease_start(
                order=order, placement=placement, request=request, price=price, record=record, now=now
            )
            return MatchOutcome("matched", lease=lease)
        # Out of time and out of candidates. (Candidates left after the reserve attempts were lost
        # to other orders: stay open and try again rather than fail with nodes still free.)
        if now >= order.deadline_at and not candidates:
            reason = no_match_reason(request, excluded=order.excluded_node_ids)
            deployments.order_fail(order=order, reason=reason, now=now)
            return MatchOutcome("failed", reason=reason)
        return MatchOutcome("waiting")


def _usd(micros: int) -> str:
    return format_usd(micros, places=2)


def no_match_reason(request: Request, *, excluded: list[int] = ()) -> str:
    """Say what is missing and what there is instead, e.g. "no H100 in eu-west under $2.00/h;
    14 in us-east from $2.35/h"."""
    what = "/".join(m.upper() if m.startswith(("h", "b", "a", "l")) else m for m in request.gpu_models) or (
        f"{request.gpu_units}-GPU node" if request.gpu_units else "node"
    )
    where = f" in {', '.join(request.regions)}" if request.regions else ""
    wanted = f"no {what}{where} under {_usd(request.max_price_per_hour_micros)}/h"
    if request.gpu_units:
        wanted += f" with {request.gpu_units} free GPU{'s' if request.gpu_units > 1 else ''}"
    # The same order without the price and region limits: what would there be?
    where, params = _node_filters(request, excluded=excluded, with_price=False)
    price, price_params = _price_sql(request)
    by_region = [
        {"region_id": region, "n": n, "cheapest": cheapest}
        for region, n, cheapest in _query(
            f"SELECT n.region_id, count(*), min({price}) FROM {Node._meta.db_table} n WHERE {' AND '.join(where)} "
            "GROUP BY n.region_id ORDER BY 3, 1 LIMIT 3",
            [*price_params, *params],
        )
    ]
    if not by_region:
        tiers = ", ".join(str(t) for t in request.tiers)
        return f"{wanted}; none anywhere in {request.mode} mode (tiers {tiers}) with that much free capacity."
    alternatives = "; ".join(
        f"{row['n']} in {row['region_id']} from {_usd(int(row['cheapest']))}/h" for row in by_region
    )
    return f"{wanted}; {alternatives}."


def deployment_match_summary(deployment: Deployment) -> dict[str, Any] | None:
    record = (
        MatchRecord.objects.filter(order__deployment=deployment).select_related("order").order_by("-created_at").first()
    )
    if record is None:
        return None
    return {
        "order_id": record.order_id,
        "attempt": record.order.attempt,
        "winner_node_id": record.winner_node_id,
        "candidate_count": record.candidate_count,
        "commitment": record.commitment,
        "top": record.scores[:5],
        "weights": record.weights,
    }


def match_proof(record: MatchRecord) -> dict[str, Any]:
    return {
        "order_id": record.order_id,
        "spec_hash": record.order.deployment.spec_hash,
        "candidates": record.candidates,
        "weights": record.weights,
        "seed": record.seed,
        "winner": record.winner_node_id,
        "commitment": record.commitment,
        "algorithm": "spheron_sdk.matching v1: score = Σ weight × factor; factors normalised to [0, 1]",
    }


__all__ = ["DeploymentStatus", "match_order", "no_match_reason", "match_proof", "DeploymentEvent"]
