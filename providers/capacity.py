"""Node capacity, owned here: the "listed" rule as SQL, what an order needs of a node and its
candidate filters, its price for that share, and reserving and releasing free capacity.

marketplace (the matchmaker, the leases) calls these and never updates a node's free capacity
itself. The SQL is written out rather than built with the ORM: building and compiling these queries
through the ORM cost 1.8 ms of CPU, 5-10 times what PostgreSQL takes to run them. The indexes they
rely on are `Node.Meta.indexes` (partial on LISTED).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import F

from core.money import HOURS_PER_MONTH
from providers.models import LISTED_TERMS, GpuModel, Node, NodeStatus, ProviderProfile
from providers.pricing import share_price_per_hour_micros


def _literal(value: object) -> str:
    if isinstance(value, str):  # a TextChoices member or a plain code: quoted, never from a user
        assert "'" not in value
        return f"'{value}'"
    return str(int(value))  # type: ignore[call-overload]


def listed_sql(alias: str = "n") -> list[str]:
    """LISTED (providers.models.LISTED_TERMS) as SQL conditions on `alias`, with the constants
    written in, as the partial indexes have them, so that the planner can use those indexes."""
    terms = []
    for field, lookup, value in LISTED_TERMS:
        column = f"{alias}.{Node._meta.get_field(field).column}"
        if isinstance(value, bool):
            terms.append(column if value else f"NOT {column}")
        elif lookup == "exact":
            terms.append(f"{column} = {_literal(value)}")
        elif lookup == "gt":
            terms.append(f"{column} > {_literal(value)}")
        else:  # pragma: no cover - LISTED_TERMS uses only these
            raise ValueError(f"no SQL for lookup {lookup!r}")
    return terms


_LISTED_SQL: list[str] | None = None


def _listed() -> list[str]:
    global _LISTED_SQL
    if _LISTED_SQL is None:
        _LISTED_SQL = listed_sql("n")
    return _LISTED_SQL


def query(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@dataclass
class Request:
    """What an order needs of a node, from its normalised spec (marketplace's deployment spec)."""

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
    """`price_sql` in Python: the node's per-resource prices for the requested share."""
    return share_price_per_hour_micros(
        node,
        gpus=request.gpu_units,
        cpu_cores=request.cpu_cores,
        memory_gb=request.memory_gb,
        storage_gb=request.storage_gb,
    )


def placeholders(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def price_sql(request: Request) -> tuple[str, list[int]]:
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
        parts.append(f"n.provider_id IN ({placeholders(ids)})")
        params += ids
    if names:
        profiles = ProviderProfile._meta.db_table
        parts.append(f"n.provider_id IN (SELECT id FROM {profiles} WHERE display_name IN ({placeholders(names)}))")
        params += names
    return "(" + " OR ".join(parts) + ")", params


def node_filters(
    request: Request, *, excluded: list[int] = (), with_price: bool = True, gpu_model: str | None = None
) -> tuple[list[str], list]:
    """Every filter of the order as SQL conditions on `n` (the node table) and their parameters.

    The first conditions are the listed rule (`listed_sql`), as the partial indexes have it.
    `gpu_model`: one model of the order's, whose kind the caller checked; without it a GPU order is
    limited to discrete GPUs here.
    """
    where = [
        *_listed(), "n.mode = %s", f"n.trust_tier IN ({placeholders(request.tiers)})", "n.available_cpu_cores >= %s",
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
            where.append(f"n.gpu_model_id IN ({placeholders(request.gpu_models)})")
            params += request.gpu_models
    if request.min_vram_gb:
        where.append("n.vram_gb >= %s")
        params.append(request.min_vram_gb)
    if request.region_exclude:
        where.append(f"n.region_id NOT IN ({placeholders(request.region_exclude)})")
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
        where.append(f"n.id NOT IN ({placeholders(list(excluded))})")
        params += list(excluded)
    if with_price:
        price, values = price_sql(request)
        where.append(f"{price} <= %s")
        params += [*values, request.max_price_per_hour_micros]
    return where, params


def reserve(needs: dict[int, tuple[int, int, int, int]]) -> set[int]:
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
    return {row[0] for row in query(sql, params)}


def release(*, node_id: int, gpus: int, cpu_cores: int, memory_gb: int, storage_gb: int) -> None:
    """Give a share back to its node's free capacity (the caller makes sure it does so once)."""
    Node.objects.filter(id=node_id).update(
        available_gpus=F("available_gpus") + gpus,
        available_cpu_cores=F("available_cpu_cores") + cpu_cores,
        available_memory_gb=F("available_memory_gb") + memory_gb,
        available_storage_gb=F("available_storage_gb") + storage_gb,
    )
