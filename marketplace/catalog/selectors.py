"""Reads for the catalog: offers, one offer, and the market board."""

from __future__ import annotations

import statistics
import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import BooleanField, Count, ExpressionWrapper, Min, Q, QuerySet, Sum
from django.http import Http404

from core.errors import ApplicationError
from core.money import usd_to_micros
from marketplace.catalog.filters import SORT_FIELDS, OfferFilter, decode_cursor, encode_cursor
from marketplace.models import Lease, Offer
from providers.models import LISTED, GpuModel, Node
from providers.selectors import gpu_model_exists, region_codes_in, region_exists

# Columns an offer listing needs; one query, one join (the provider's display name).
OFFER_COLUMNS = (
    "id",
    "provider__display_name",
    "gpu_model_id",
    "gpu_count",
    "vram_gb",
    "gpu_tier",
    "cpu_cores",
    "memory_gb",
    "storage_gb",
    "bandwidth_mbps",
    "region_id",
    "mode",
    "price_per_hour_micros",
    "price_per_gpu_hour_micros",
    "price_per_vram_gb_micros",
    "uptime_1d",
    "uptime_7d",
    "uptime_30d",
    "trust_tier",
    "available_gpus",
)


def check_references(filters: OfferFilter) -> None:
    """Raise ApplicationError naming the field when the filter names a model or region we lack."""
    if filters.gpu_model and not gpu_model_exists(filters.gpu_model):
        raise ApplicationError(
            f"gpu_model: unknown GPU model {filters.gpu_model!r}; see /api/v1/gpu-models for the list.",
            {"field": "gpu_model"},
        )
    if filters.region and not region_exists(filters.region):
        raise ApplicationError(
            f"region: unknown region {filters.region!r}; see /api/v1/regions for the list.", {"field": "region"}
        )


def _filter_q(filters: OfferFilter) -> Q:
    q = Q()
    if filters.gpu_model:
        q &= Q(gpu_model_id=filters.gpu_model)
    if filters.min_vram_gb is not None:
        q &= Q(vram_gb__gte=filters.min_vram_gb)
    if filters.min_gpus is not None:
        q &= Q(available_gpus__gte=filters.min_gpus)
    if filters.region:
        q &= Q(region_id=filters.region)
    if filters.continent:
        # A list of region codes, not a join: the planner can then walk the sort key's index
        # and filter, instead of joining regions and sorting every match.
        q &= Q(region_id__in=region_codes_in(filters.continent))
    if filters.max_price_per_hour is not None:
        q &= Q(price_per_hour_micros__lte=usd_to_micros(filters.max_price_per_hour))
    if filters.min_uptime is not None:
        q &= Q(uptime_30d__gte=filters.min_uptime)
    if filters.tiers:
        q &= Q(trust_tier__in=filters.tiers)
    if filters.mode:
        q &= Q(mode=filters.mode)
    return q


def offer_list(*, filters: OfferFilter) -> QuerySet[Offer]:
    """Listed offers matching the filter, in a total order (sort key, then node id).

    An unknown `gpu_model` or `region` simply matches nothing here; callers that show a page
    call `check_references` when it comes back empty, so the common case costs no extra query.
    """
    field, descending = SORT_FIELDS[filters.sort]
    ordering = (f"-{field}", "-id") if descending else (field, "id")
    return Offer.objects.filter(_filter_q(filters)).order_by(*ordering)


@dataclass(frozen=True)
class OfferPage:
    rows: list[dict]
    next_cursor: str | None


# Building and compiling the offers query through the ORM costs about 1 ms a request, more than
# the indexed query takes to run (bench/catalog.py): the SQL of each (filter, page size, cursor)
# is kept per process, least recently used first out, and only executed. The query reads no
# settings, clock or rows while it is built, except a continent filter's region list, which is
# part of the key (providers keeps it per process).
_PAGE_SQL: OrderedDict[tuple, tuple[str, tuple] | None] = OrderedDict()
_PAGE_SQL_SIZE = 256
_PAGE_SQL_LOCK = threading.Lock()


def _page_sql(filters: OfferFilter, limit: int, after: tuple[int | float, int] | None) -> tuple[str, tuple] | None:
    """The page's SQL and parameters; None when the filter can match nothing (a continent with no
    regions: the ORM does not even write the SQL)."""
    regions = region_codes_in(filters.continent) if filters.continent else None
    key = (connection.vendor, tuple(filters.model_dump(mode="json").items()), regions, limit, after)
    with _PAGE_SQL_LOCK:
        if key in _PAGE_SQL:
            _PAGE_SQL.move_to_end(key)
            return _PAGE_SQL[key]
    queryset = offer_list(filters=filters)
    if after is not None:
        field, descending = SORT_FIELDS[filters.sort]
        value, node_id = after
        # `key >= v` gives the database an index range to start from; the OR breaks ties by id.
        if descending:
            queryset = queryset.filter(
                Q(**{f"{field}__lte": value}) & (Q(**{f"{field}__lt": value}) | Q(id__lt=node_id))
            )
        else:
            queryset = queryset.filter(
                Q(**{f"{field}__gte": value}) & (Q(**{f"{field}__gt": value}) | Q(id__gt=node_id))
            )
    try:
        compiled: tuple[str, tuple] | None = queryset.values(*OFFER_COLUMNS)[: limit + 1].query.sql_with_params()
    except EmptyResultSet:
        compiled = None
    with _PAGE_SQL_LOCK:
        _PAGE_SQL[key] = compiled
        while len(_PAGE_SQL) > _PAGE_SQL_SIZE:
            _PAGE_SQL.popitem(last=False)
    return compiled


def offer_page(*, filters: OfferFilter, limit: int, cursor: str | None = None) -> OfferPage:
    """One page of offers by keyset pagination: stable while rows are added or removed."""
    field, _descending = SORT_FIELDS[filters.sort]
    after = decode_cursor(cursor, sort=filters.sort) if cursor else None
    compiled = _page_sql(filters, limit, after)
    rows: list[dict] = []
    if compiled is not None:
        with connection.cursor() as db:
            db.execute(*compiled)
            columns = [column[0] for column in db.description]
            rows = [dict(zip(columns, row, strict=True)) for row in db.fetchall()]
    if not rows:
        check_references(filters)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(sort=filters.sort, value=last[field], node_id=last["id"])
    return OfferPage(rows=rows, next_cursor=next_cursor)


def offer_row(*, node_id: int, user: AbstractBaseUser | AnonymousUser | None = None) -> dict:
    """One node as the offers API shows it, with its status fields: listed, or (any status) to its
    owner and renters (`_may_see_unlisted`); otherwise a 404, as if it did not exist."""
    row = (
        Node.objects.filter(id=node_id)
        .annotate(listed=ExpressionWrapper(LISTED, output_field=BooleanField()))
        .values(*OFFER_COLUMNS, "name", "status", "in_maintenance", "last_seen_at", "listed", "provider__user_id")
        .first()
    )
    if row is None or not (row["listed"] or _may_see_unlisted(node_id, row["provider__user_id"], user)):
        raise Http404(f"No offer with node id {node_id}.")
    return row


def _may_see_unlisted(node_id: int, provider_user_id: int, user: AbstractBaseUser | AnonymousUser | None) -> bool:
    """A node the catalog does not list is shown only to its owner and to whoever rents or rented it
    (their deployment links to it); to anyone else it does not exist."""
    if user is None or not user.is_authenticated:
        return False
    if user.pk == provider_user_id:
        return True

    return Lease.objects.filter(node_id=node_id, deployment__owner_id=user.pk).exists()


def offer_get_for_user(*, node_id: int, user: AbstractBaseUser | AnonymousUser | None) -> Node:
    """The offer page's node: listed (the catalog's own LISTED condition), or visible to `user`
    (`_may_see_unlisted`); otherwise the same 404 as a node that does not exist."""
    node = (
        Node.objects.select_related("provider", "region", "gpu_model")
        .annotate(listed=ExpressionWrapper(LISTED, output_field=BooleanField()))
        .filter(id=node_id)
        .first()
    )
    if node is None or not (node.listed or _may_see_unlisted(node.id, node.provider.user_id, user)):  # type: ignore[attr-defined]
        raise Http404(f"No offer with node id {node_id}.")
    return node


# --- Market board -----------------------------------------------------------------------------
@dataclass(frozen=True)
class MarketRow:
    gpu_model: str
    name: str
    vendor: str
    vram_gb: int
    gpu_tier: str
    offers: int
    free_gpus: int
    lowest_price_per_gpu_hour_micros: int | None
    median_price_per_gpu_hour_micros: int | None
    kind: str = GpuModel.Kind.GPU  # gpu, apple or cpu: whether vram_gb means VRAM, unified memory or nothing


def _medians(queryset: QuerySet) -> dict[str, int]:
    """Median price per GPU-hour for each model, in the database when it can."""
    if connection.vendor == "postgresql":
        inner_sql, params = queryset.values("gpu_model_id", "price_per_gpu_hour_micros").query.sql_with_params()
        sql = (
            "SELECT sub.gpu_model_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY sub.price_per_gpu_hour_micros) "
            f"FROM ({inner_sql}) sub GROUP BY sub.gpu_model_id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {slug: int(round(float(median))) for slug, median in cursor.fetchall()}
    prices: dict[str, list[int]] = {}
    for slug, price in (
        queryset.order_by().values_list("gpu_model_id", "price_per_gpu_hour_micros").iterator(chunk_size=5000)
    ):
        prices.setdefault(slug, []).append(price)
    return {slug: int(round(statistics.median(values))) for slug, values in prices.items()}


def market_board_compute(*, filters: OfferFilter | None = None) -> list[MarketRow]:
    queryset = Offer.objects.all()
    if filters is not None:
        check_references(filters)
        # The board compares models, so a model filter does not narrow it.
        queryset = queryset.filter(_filter_q(filters.model_copy(update={"gpu_model": None})))
    stats = {
        row["gpu_model_id"]: row
        for row in queryset.order_by()
        .values("gpu_model_id")
        .annotate(offers=Count("id"), free_gpus=Sum("available_gpus"), lowest=Min("price_per_gpu_hour_micros"))
    }
    medians = _medians(queryset.order_by())
    board = []
    for model in GpuModel.objects.all():
        row = stats.get(model.slug)
        board.append(
            MarketRow(
                gpu_model=model.slug,
                name=model.name,
                vendor=model.vendor,
                vram_gb=model.vram_gb,
                gpu_tier=model.gpu_tier,
                offers=row["offers"] if row else 0,
                free_gpus=row["free_gpus"] if row else 0,
                lowest_price_per_gpu_hour_micros=row["lowest"] if row else None,
                median_price_per_gpu_hour_micros=medians.get(model.slug),
                kind=model.kind,
            )
        )
    return board


def _board_cache_key(filters: OfferFilter | None) -> str:
    if filters is None:
        return "market-board:v2:all"
    parts = [filters.mode or "", filters.region or "", filters.continent or "", filters.tier or ""]
    parts += [str(filters.min_vram_gb or ""), str(filters.min_gpus or ""), str(filters.max_price_per_hour or "")]
    parts.append(str(filters.min_uptime if filters.min_uptime is not None else ""))
    return "market-board:v2:" + ":".join(parts)


def market_board(*, filters: OfferFilter | None = None, max_age: int | None = None) -> list[MarketRow]:
    """The board, cached for a short time: it aggregates every listed node."""

    timeout = settings.MARKET_BOARD_CACHE_SECONDS if max_age is None else max_age
    if filters is not None and not filters.active().keys() - {"gpu_model", "sort"}:
        filters = None
    key = _board_cache_key(filters)
    if timeout:
        cached = cache.get(key)
        if cached is not None:
            return cached
    board = market_board_compute(filters=filters)
    if timeout:
        cache.set(key, board, timeout)
    return board


def market_board_refresh() -> int:
    """Recompute the unfiltered board into the cache (beat task); returns the offers counted."""

    board = market_board_compute()
    cache.set(_board_cache_key(None), board, max(settings.MARKET_BOARD_CACHE_SECONDS, 1) * 2)
    return sum(row.offers for row in board)
