"""The matchmaker: candidates in SQL, scores in Python (spheron_sdk.matching), a conditional
update that reserves capacity, and a commitment anyone can check. It decides and returns placements
(`decide`); marketplace.deployments.services claims the orders and starts the leases.
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
from django.db import connection
from spheron_sdk import matching

from core.money import HOURS_PER_MONTH, format_usd
from marketplace.models import (
    MatchRecord,
    Order,
)
from providers.models import GpuModel, Node, NodeStatus, ProviderProfile, Region
from providers.pricing import node_price_per_hour_micros

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


def _provider_id(text: str) -> bool:
    """A provider's id: ASCII digits ('²' passes isdigit() but not int()) that fit a bigint."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _provider_sql(values: list[str]) -> tuple[str, list]:
    """Providers named by id or by display name."""
    ids = [int(v) for v in values if _provider_id(str(v))]
    names = [v for v in values if not _provider_id(str(v))]
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
_gpu_models: tuple[float, dict[str, tuple[str, str]]] = (-math.inf, {})


def _gpu_model_facts() -> dict[str, tuple[str, str]]:
    """Slug → (kind, name) of every GPU model. Reference data (providers/reference): read once per
    process and again after REFERENCE_DATA_SECONDS, not joined into every candidate query."""
    global _gpu_models
    loaded_at, facts = _gpu_models
    if time.monotonic() - loaded_at > REFERENCE_DATA_SECONDS:
        facts = {slug: (kind, name) for slug, kind, name in GpuModel.objects.values_list("slug", "kind", "name")}
        _gpu_models = (time.monotonic(), facts)
    return facts


def gpu_model_name(slug: str) -> str:
    """A GPU model's display name ("GeForce RTX 4090"), or the slug if it is unknown."""
    facts = _gpu_model_facts().get(slug)
    return facts[1] if facts else slug


def candidate_rows(request: Request, *, excluded: list[int] = ()) -> list[dict[str, Any]]:
    """The cheapest MATCH_CANDIDATE_LIMIT nodes that pass every filter, in the requested regions.

    A GPU order naming its models sends one query per model (each walks the index
    node_listed_model_gpu_hour in price order and stops at the limit), merged here: PostgreSQL
    cannot merge ordered index scans over an IN list, so one query for several models fetched and
    sorted every listed node of those models. A model that is not a discrete GPU matches nothing.
    """
    rows = [
        dict(zip(CANDIDATE_FIELDS, row, strict=True))
        for sql, params in candidate_queries(request, excluded=excluded)
        for row in _query(sql, params)
    ]
    return _merged(request, rows)


def candidate_rows_many(items: list[tuple[Request, list[int]]]) -> list[list[dict[str, Any]]]:
    """`candidate_rows` of several orders in one round trip: their queries, unchanged, as the
    branches of one UNION ALL, each row tagged with its order's position."""
    parts, params = [], []
    for n, (request, excluded) in enumerate(items):
        for sql, values in candidate_queries(request, excluded=excluded):
            parts.append(f"SELECT {n} AS k, q{len(parts)}.* FROM ({sql}) AS q{len(parts)}")
            params += values
    found: list[list[dict[str, Any]]] = [[] for _ in items]
    if parts:
        for row in _query(" UNION ALL ".join(parts), params):
            found[row[0]].append(dict(zip(CANDIDATE_FIELDS, row[1:], strict=True)))
    return [_merged(request, rows) for (request, _), rows in zip(items, found, strict=True)]


def candidate_queries(request: Request, *, excluded: list[int] = ()) -> list[tuple[str, list]]:
    """The SQL (and parameters) that finds an order's candidates: one query per GPU model it names
    (see `candidate_rows`), else one."""
    if not request.tiers:
        return []
    if request.gpu_units and request.gpu_models:
        facts = _gpu_model_facts()
        models = [m for m in dict.fromkeys(request.gpu_models) if facts.get(m, ("",))[0] == GpuModel.Kind.GPU]
        return [_candidate_sql(request, excluded=excluded, gpu_model=model) for model in models]
    return [_candidate_sql(request, excluded=excluded)]


def _merged(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of an order's queries in the queries' own order (price, then id), cut at the limit."""
    sort = "gpu_price_per_hour_micros" if request.gpu_units else "price_per_hour_micros"
    rows.sort(key=lambda row: (row[sort], row["id"]))
    return rows[: settings.MATCH_CANDIDATE_LIMIT]


def _candidate_sql(request: Request, *, excluded: list[int], gpu_model: str | None = None) -> tuple[str, list]:
    where, params = _node_filters(request, excluded=excluded, gpu_model=gpu_model)
    if request.regions:
        where.append(f"n.region_id IN ({_placeholders(request.regions)})")
        params += request.regions
    price, price_params = _price_sql(request)
    sort = "n.gpu_price_per_hour_micros" if request.gpu_units else "n.price_per_hour_micros"
    columns = ", ".join(price if name == "lease_price" else f"n.{name}" for name in CANDIDATE_FIELDS)
    sql = f"SELECT {columns} FROM {Node._meta.db_table} n WHERE {' AND '.join(where)} ORDER BY {sort}, n.id LIMIT %s"
    return sql, [*price_params, *params, settings.MATCH_CANDIDATE_LIMIT]


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
    In SQL for the reason given in `_node_filters`."""
    if not provider_ids:
        return {}
    ids = sorted(provider_ids)
    rows = _query(
        "SELECT p.id, p.staked_spon, p.slash_count, p.user_id, p.display_name "
        f"FROM {ProviderProfile._meta.db_table} p WHERE p.id IN ({_placeholders(ids)})",
        ids,
    )
    return {id_: ProviderFacts(int(stake), slashes, user_id, name) for id_, stake, slashes, user_id, name in rows}


def _regions_needed(rows: list[dict[str, Any]], request: Request) -> set[str]:
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
        codes = _regions_needed(rows, request)
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


def _reserve(needs: dict[int, tuple[int, int, int, int]]) -> set[int]:
    """Take capacity on several nodes at once, each only if it is still free: one conditional
    UPDATE, so two workers never both get it. Returns the nodes reserved.

    `needs`: node id → (GPUs, cores, GB of memory, GB of storage). On PostgreSQL the rows are
    locked first in id order with SKIP LOCKED, so two batches never wait on each other (nor
    deadlock): a node another transaction is reserving counts as taken. (In SQL: the ORM spent more
    CPU building this than PostgreSQL spends running it.)
    """
    if not needs:
        return set()
    table = Node._meta.db_table
    ids = sorted(needs)
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(ids))
    params: list = [value for node_id in ids for value in (node_id, *needs[node_id])]
    free = (
        "n.status = %s AND NOT n.in_maintenance AND n.available_gpus >= need.g AND n.available_cpu_cores >= need.c "
        "AND n.available_memory_gb >= need.m AND n.available_storage_gb >= need.s"
    )
    if connection.vendor == "postgresql":
        sql = (
            f"WITH need (id, g, c, m, s) AS (VALUES {values}), "
            f"free AS (SELECT n.id FROM {table} n JOIN need ON need.id = n.id WHERE {free} "
            "ORDER BY n.id FOR UPDATE OF n SKIP LOCKED) "
            f"UPDATE {table} n SET available_gpus = n.available_gpus - need.g, "
            "available_cpu_cores = n.available_cpu_cores - need.c, "
            "available_memory_gb = n.available_memory_gb - need.m, "
            "available_storage_gb = n.available_storage_gb - need.s "
            f"FROM need WHERE n.id = need.id AND n.id IN (SELECT id FROM free) AND {free} RETURNING n.id"
        )
        params += [NodeStatus.ONLINE.value, NodeStatus.ONLINE.value]
    else:  # SQLite: writers are serialised, no row locks; correlated look-ups instead of a join
        pick = "(SELECT need.{0} FROM need WHERE need.id = {1}.id)".format
        sql = (
            f"WITH need (id, g, c, m, s) AS (VALUES {values}) "
            f"UPDATE {table} SET available_gpus = available_gpus - {pick('g', table)}, "
            f"available_cpu_cores = available_cpu_cores - {pick('c', table)}, "
            f"available_memory_gb = available_memory_gb - {pick('m', table)}, "
            f"available_storage_gb = available_storage_gb - {pick('s', table)} "
            f"WHERE id IN (SELECT id FROM need) AND status = %s AND NOT in_maintenance "
            f"AND available_gpus >= {pick('g', table)} AND available_cpu_cores >= {pick('c', table)} "
            f"AND available_memory_gb >= {pick('m', table)} AND available_storage_gb >= {pick('s', table)} "
            "RETURNING id"
        )
        params.append(NodeStatus.ONLINE.value)
    return {row[0] for row in _query(sql, params)}


@dataclass
class _Work:
    """One order of a batch while it is matched."""

    order: Order
    request: Request
    rows: dict[int, dict[str, Any]]
    candidates: list[dict[str, Any]]
    seed: str
    need: tuple[int, int, int, int]
    scored: list[tuple[Decimal, int, dict[str, Decimal]]] | None = None  # matching.ranked
    winner: int | None = None


@dataclass(frozen=True)
class Placement:
    """The node the matchmaker chose, as its candidate query read it: what a lease needs."""

    node_id: int
    gpu_model_id: str | None
    region_id: str
    is_simulated: bool
    provider_name: str
    payee_id: int  # the provider's user, whom the lease's meter pays


@dataclass(frozen=True)
class Decision:
    """What the matchmaker decided for one order: a placement at a price (its node's capacity
    reserved, its MatchRecord written), or none: `failed_reason` when the order is out of time and
    of candidates (what to tell the renter), else it waits and is tried again."""

    order: Order
    request: Request
    placement: Placement | None = None
    price: int = 0
    record: MatchRecord | None = None
    failed_reason: str = ""


def decide(orders: list[Order], *, now: datetime) -> list[Decision]:
    """Place a batch of claimed orders (locked by the caller's transaction), one Decision per order
    in their order: candidates found in one round trip, each order scored on its own, capacity
    reserved for all of them with one conditional UPDATE (orders whose node was taken meanwhile drop
    it and try their next best, up to MAX_RESERVE_ATTEMPTS rounds), the proofs recorded with one
    INSERT. Starting the leases is the caller's (marketplace.deployments.services.match_orders)."""
    works = []
    requests = [Request.from_spec(order.deployment.spec) for order in orders]
    found = candidate_rows_many([(r, o.excluded_node_ids) for r, o in zip(requests, orders, strict=True)])
    providers = provider_facts({row["provider_id"] for rows in found for row in rows})
    codes = set().union(*(_regions_needed(rows, r) for rows, r in zip(found, requests, strict=True)))
    regions = {r.code: r for r in Region.objects.filter(code__in=codes)} if codes else {}
    for order, request, rows in zip(orders, requests, found, strict=True):
        works.append(
            _Work(
                order=order,
                request=request,
                rows={row["id"]: row for row in rows},
                candidates=snapshot(rows, request, providers=providers, regions=regions),
                seed=order_seed(order),
                need=(max(request.gpu_units, 0), request.cpu_cores, request.memory_gb, request.storage_gb),
            )
        )
    chosen = weights()
    _allocate(works, chosen)

    won = [w for w in works if w.winner is not None]
    records: dict[int, MatchRecord] = {}
    if won:
        created = MatchRecord.objects.bulk_create([_record(w, chosen, now) for w in won])
        records = {id(w): record for w, record in zip(won, created, strict=True)}
    decisions = []
    for work in works:
        if work.winner is not None:
            row = work.rows[work.winner]
            provider = providers[row["provider_id"]]
            placement = Placement(
                node_id=work.winner,
                gpu_model_id=row["gpu_model_id"],
                region_id=row["region_id"],
                is_simulated=row["is_simulated"],
                provider_name=provider.name,
                payee_id=provider.user_id,
            )
            price = next(c["price_per_hour_micros"] for c in work.candidates if c["node_id"] == work.winner)
            decisions.append(Decision(work.order, work.request, placement, price, records[id(work)]))
        # Out of time and out of candidates. (Candidates left after the reserve attempts were lost
        # to other orders: stay open and try again rather than fail with nodes still free.)
        elif now >= work.order.deadline_at and not work.candidates:
            reason = no_match_reason(work.request, excluded=work.order.excluded_node_ids)
            decisions.append(Decision(work.order, work.request, failed_reason=reason))
        else:
            decisions.append(Decision(work.order, work.request))
    return decisions


def _allocate(works: list[_Work], chosen: dict[str, str]) -> None:
    """Pick each order's winner and reserve it. Orders are served in claim order; an order whose
    best node another order of the batch has already filled, or that another transaction took
    (the reservation failed), drops that node from its candidates (it was not available, so it
    leaves the proof) and is scored again without it."""
    taken: dict[int, list[int]] = {}  # capacity this batch reserved, by node
    pending = [w for w in works if w.candidates]
    for _attempt in range(MAX_RESERVE_ATTEMPTS):
        if not pending:
            return
        plan: dict[int, list[_Work]] = {}
        planned: dict[int, list[int]] = {}
        for work in pending:
            while work.candidates:
                scored = matching.ranked(work.candidates, chosen, work.seed)
                node = scored[0][1]
                row = work.rows[node]
                used = planned.get(node) or taken.get(node) or [0, 0, 0, 0]
                free = (
                    row["available_gpus"], row["available_cpu_cores"],
                    row["available_memory_gb"], row["available_storage_gb"],
                )  # fmt: skip
                if all(f - u >= n for f, u, n in zip(free, used, work.need, strict=True)):
                    planned[node] = [u + n for u, n in zip(used, work.need, strict=True)]
                    plan.setdefault(node, []).append(work)
                    work.scored = scored
                    break
                work.candidates = [c for c in work.candidates if c["node_id"] != node]
        needs = {}
        for node in plan:
            before = taken.get(node) or [0, 0, 0, 0]
            needs[node] = tuple(p - b for p, b in zip(planned[node], before, strict=True))
        reserved = _reserve(needs)
        pending = []
        for node, works_on_node in plan.items():
            if node in reserved:
                taken[node] = planned[node]
                for work in works_on_node:
                    work.winner = node
            else:  # taken by another order meanwhile
                for work in works_on_node:
                    work.candidates = [c for c in work.candidates if c["node_id"] != node]
                    work.scored = None
                    if work.candidates:
                        pending.append(work)
        pending.sort(key=lambda w: (w.order.created_at, w.order.id))


def _record(work: _Work, chosen: dict[str, str], now: datetime) -> MatchRecord:
    document = matching.match_document(
        order_id=work.order.id, spec_hash=work.order.deployment.spec_hash, candidates=work.candidates,
        weights=chosen, seed=work.seed, winner=work.winner,
    )  # fmt: skip
    return MatchRecord(
        order=work.order,
        seed=work.seed,
        weights=chosen,
        candidates=work.candidates,
        scores=matching.formatted(work.scored[:10]),
        winner_node_id=work.winner,
        commitment=matching.commitment(document),
        candidate_count=len(work.candidates),
        created_at=now,
    )


def no_match_reason(request: Request, *, excluded: list[int] = ()) -> str:
    """Say what is missing and what there is instead, e.g. "no H100 in eu-west under $2.00/h;
    14 in us-east from $2.35/h"."""
    what = "/".join(m.upper() if m.startswith(("h", "b", "a", "l")) else m for m in request.gpu_models) or (
        f"{request.gpu_units}-GPU node" if request.gpu_units else "node"
    )
    where = f" in {', '.join(request.regions)}" if request.regions else ""
    wanted = f"no {what}{where} under {format_usd(request.max_price_per_hour_micros, places=2)}/h"
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
        f"{row['n']} in {row['region_id']} from {format_usd(int(row['cheapest']), places=2)}/h" for row in by_region
    )
    return f"{wanted}; {alternatives}."


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
