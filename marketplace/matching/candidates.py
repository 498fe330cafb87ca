"""Candidates: the nodes that can take an order, in SQL, cheapest first (the filters themselves
are providers.capacity's), and what to tell the renter when there are none."""

from __future__ import annotations

import math
import time
from typing import Any

from django.conf import settings

from core.money import format_usd
from providers.capacity import Request, node_filters, placeholders, price_sql, query
from providers.models import GpuModel, Node

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
        for row in query(sql, params)
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
        for row in query(" UNION ALL ".join(parts), params):
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
    where, params = node_filters(request, excluded=excluded, gpu_model=gpu_model)
    if request.regions:
        where.append(f"n.region_id IN ({placeholders(request.regions)})")
        params += request.regions
    price, price_params = price_sql(request)
    sort = "n.gpu_price_per_hour_micros" if request.gpu_units else "n.price_per_hour_micros"
    columns = ", ".join(price if name == "lease_price" else f"n.{name}" for name in CANDIDATE_FIELDS)
    sql = f"SELECT {columns} FROM {Node._meta.db_table} n WHERE {' AND '.join(where)} ORDER BY {sort}, n.id LIMIT %s"
    return sql, [*price_params, *params, settings.MATCH_CANDIDATE_LIMIT]


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
    where, params = node_filters(request, excluded=excluded, with_price=False)
    price, price_params = price_sql(request)
    by_region = [
        {"region_id": region, "n": n, "cheapest": cheapest}
        for region, n, cheapest in query(
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
