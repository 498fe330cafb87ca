from __future__ import annotations

from decimal import Decimal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import BaseModel, Field

from core.money import exact_usd
from core.schemas import ErrorOut
from marketplace.catalog.filters import OfferFilter
from marketplace.catalog.selectors import market_board, offer_page, offer_row
from providers.models import Continent, NodeMode
from providers.selectors import gpu_model_kind, gpu_model_list, region_list

router = Router(tags=["catalog"])


ERRORS = {code: ErrorOut for code in (400, 404, 422)}


class OfferOut(BaseModel):
    # Plain pydantic models: ninja's Schema wraps every input for ORM access, which costs
    # about 1 ms per 50-item page on the hottest endpoint.

    node_id: int
    provider: str
    gpu_model: str = Field(description="GPU model slug (GET /gpu-models)")
    gpu_kind: str = Field(
        description="The model's kind: `gpu`, `apple` (Apple silicon) or `cpu` (a CPU-only machine, no GPU)"
    )
    unit: str = Field(
        description="What gpu_count, available_gpus and price_per_gpu_hour count: `gpu`, or `machine` for a "
        "CPU-only or Apple machine, which is one unit (its price_per_gpu_hour is per machine-hour)"
    )
    gpu_count: int = Field(description="GPUs; 1 for a CPU-only or Apple machine (one unit)")
    vram_gb: int = Field(description="Memory per GPU, GB")
    gpu_tier: str
    cpu_cores: int
    memory_gb: int
    storage_gb: int
    bandwidth_mbps: int
    region: str
    mode: NodeMode
    price_per_hour: str = Field(description="USD per hour for the whole node, exact decimal string")
    price_per_gpu_hour: str = Field(description="USD per GPU-hour; per machine-hour when unit is `machine`")
    price_per_vram_gb_hour: str = Field(description="USD per GB of VRAM per hour (all GPUs)")
    uptime_1d: float
    uptime_7d: float
    uptime_30d: float = Field(ge=0, le=1)
    trust_tier: int = Field(ge=1, le=7)
    available_gpus: int


class OfferPageOut(BaseModel):
    items: list[OfferOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


def _offer_item(row: dict) -> dict:
    kind = gpu_model_kind(row["gpu_model_id"])
    return {
        "node_id": row["id"],
        "provider": row["provider__display_name"],
        "gpu_model": row["gpu_model_id"],
        "gpu_kind": kind,
        "unit": "gpu" if kind == "gpu" else "machine",
        "gpu_count": row["gpu_count"],
        "vram_gb": row["vram_gb"],
        "gpu_tier": row["gpu_tier"],
        "cpu_cores": row["cpu_cores"],
        "memory_gb": row["memory_gb"],
        "storage_gb": row["storage_gb"],
        "bandwidth_mbps": row["bandwidth_mbps"],
        "region": row["region_id"],
        "mode": row["mode"],
        "price_per_hour": exact_usd(row["price_per_hour_micros"]),
        "price_per_gpu_hour": exact_usd(row["price_per_gpu_hour_micros"]),
        "price_per_vram_gb_hour": exact_usd(row["price_per_vram_gb_micros"]),
        "uptime_1d": row["uptime_1d"],
        "uptime_7d": row["uptime_7d"],
        "uptime_30d": row["uptime_30d"],
        "trust_tier": row["trust_tier"],
        "available_gpus": row["available_gpus"],
    }


@router.get("/offers", response={200: OfferPageOut, **ERRORS}, operation_id="offers_list", summary="Search offers")
def offers_list(
    request: HttpRequest,
    filters: Query[OfferFilter],
    limit: int = Query(50, ge=1, le=200, description="Items per page, at most 200"),
    cursor: str | None = Query(None, max_length=200, description="next_cursor from the previous page"),
):
    """Listed offers (online, not in maintenance, with a free GPU), filtered and sorted, by cursor."""
    page = offer_page(filters=filters, limit=limit, cursor=cursor)
    return {"items": [_offer_item(row) for row in page.rows], "next_cursor": page.next_cursor}


class OfferDetailOut(OfferOut):
    name: str
    status: str
    in_maintenance: bool
    listed: bool = Field(description="Whether the catalog lists it right now")
    last_seen_at: str | None


@router.get(
    "/offers/{node_id}", response={200: OfferDetailOut, **ERRORS}, operation_id="offers_get", summary="One offer"
)
def offers_get(request: HttpRequest, node_id: int):
    row = offer_row(node_id=node_id, user=request.user)
    return {
        **_offer_item(row),
        "name": row["name"],
        "status": row["status"],
        "in_maintenance": row["in_maintenance"],
        "listed": row["listed"],
        "last_seen_at": row["last_seen_at"].isoformat() if row["last_seen_at"] else None,
    }


class GpuModelOut(Schema):
    slug: str
    vendor: str
    name: str
    kind: str
    vram_gb: int
    architecture: str
    gpu_tier: str
    multiplier: Decimal


@router.get("/gpu-models", response=list[GpuModelOut], operation_id="gpu_models_list", summary="GPU models")
def gpu_models(request: HttpRequest):
    return list(gpu_model_list())


class RegionOut(Schema):
    code: str
    name: str
    continent: Continent
    country: str
    latitude: Decimal
    longitude: Decimal


@router.get("/regions", response=list[RegionOut], operation_id="regions_list", summary="Regions")
def regions(request: HttpRequest):
    return list(region_list())


class MarketRowOut(Schema):
    gpu_model: str
    name: str
    vendor: str
    vram_gb: int
    gpu_tier: str
    kind: str = Field(description="`gpu`, `apple` or `cpu` (CPU-only machines)")
    unit: str = Field(description="`gpu`, or `machine` when each node is one unit (CPU-only, Apple)")
    offers: int = Field(description="Listed nodes with this model")
    free_gpus: int = Field(description="Free units: GPUs, or machines when unit is `machine`")
    lowest_price_per_gpu_hour: str | None = Field(description="Per GPU-hour; per machine-hour when unit is `machine`")
    median_price_per_gpu_hour: str | None = Field(description="Per GPU-hour; per machine-hour when unit is `machine`")


@router.get(
    "/market", response={200: list[MarketRowOut], **ERRORS}, operation_id="market_board", summary="Market board"
)
def market(request: HttpRequest, filters: Query[OfferFilter]):
    """Per GPU model: listed offers, free GPUs, lowest and median price per GPU-hour (cached ~1 min).

    Takes the offer filters; `gpu_model` and `sort` do not narrow it, since it compares models.
    """
    return [
        {
            **{
                field: getattr(row, field)
                for field in ("gpu_model", "name", "vendor", "vram_gb", "gpu_tier", "kind", "offers", "free_gpus")
            },
            "unit": "gpu" if row.kind == "gpu" else "machine",
            "lowest_price_per_gpu_hour": None
            if row.lowest_price_per_gpu_hour_micros is None
            else exact_usd(row.lowest_price_per_gpu_hour_micros),
            "median_price_per_gpu_hour": None
            if row.median_price_per_gpu_hour_micros is None
            else exact_usd(row.median_price_per_gpu_hour_micros),
        }
        for row in market_board(filters=filters)
    ]
