"""The catalog's filter, shared by the /gpus/ page and GET /api/v1/offers."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from core import cursors
from core.errors import ApplicationError
from core.money import parse_plain_decimal
from core.query import clean_query_value
from providers.models import Continent, NodeMode

SortKey = Literal["price", "-price", "price_per_vram", "uptime", "-uptime", "vram", "-vram"]
SORT_LABELS: dict[str, str] = {
    "price": "Price: low to high",
    "-price": "Price: high to low",
    "price_per_vram": "Price per GB of VRAM",
    "-uptime": "Uptime: high to low",
    "uptime": "Uptime: low to high",
    "-vram": "VRAM: most first",
    "vram": "VRAM: least first",
}
# sort key -> (model field, descending)
SORT_FIELDS: dict[str, tuple[str, bool]] = {
    "price": ("price_per_hour_micros", False),
    "-price": ("price_per_hour_micros", True),
    "price_per_vram": ("price_per_vram_gb_micros", False),
    "uptime": ("uptime_30d", False),
    "-uptime": ("uptime_30d", True),
    "vram": ("vram_gb", False),
    "-vram": ("vram_gb", True),
}

SECURED_TIERS = (1, 2, 3)
COMMUNITY_TIERS = (4, 5, 6, 7)
TIER_HELP = (
    "use secured, community, secured-1..secured-3, community-4..community-7 or 1..7 (comma-separated for several)"
)


def parse_tiers(value: str) -> tuple[int, ...]:
    """'secured' -> (1, 2, 3); 'community-5' -> (5,); '1,2' -> (1, 2)."""
    tiers: set[int] = set()
    for raw in value.split(","):
        item = raw.strip().lower()
        if item == "secured":
            tiers.update(SECURED_TIERS)
        elif item == "community":
            tiers.update(COMMUNITY_TIERS)
        elif item.startswith("secured-") and item[8:] in {"1", "2", "3"}:
            tiers.add(int(item[8:]))
        elif item.startswith("community-") and item[10:] in {"4", "5", "6", "7"}:
            tiers.add(int(item[10:]))
        elif item in {"1", "2", "3", "4", "5", "6", "7"}:
            tiers.add(int(item))
        else:
            raise ValueError(f"unknown tier {raw.strip()!r}; {TIER_HELP}")
    return tuple(sorted(tiers))


class OfferFilter(BaseModel):
    gpu_model: str | None = Field(None, max_length=40, description="GPU model slug, e.g. rtx4090 (GET /gpu-models)")
    min_vram_gb: int | None = Field(None, ge=1, le=4096, description="Minimum memory per GPU, GB")
    min_gpus: int | None = Field(None, ge=1, le=64, description="Minimum free GPUs on the node")
    region: str | None = Field(None, max_length=32, description="Region code, e.g. us-east (GET /regions)")
    continent: Continent | None = Field(None, description="Continent code, e.g. europe")
    max_price_per_hour: Decimal | None = Field(
        None, ge=0, le=100_000, max_digits=12, decimal_places=6, description="USD per hour for the whole node"
    )
    min_uptime: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, description="30-day uptime, 0 to 1")
    tier: str | None = Field(None, max_length=100, description=TIER_HELP)
    mode: NodeMode | None = Field(None, description="fizz (community) or provider (secure)")
    sort: SortKey = Field("price", description="Order of results")

    @field_validator("*", mode="before")
    @classmethod
    def _reject_nul_and_blank(cls, value: Any, info: ValidationInfo) -> Any:
        # A field-level validator: ninja hands model-level ones a wrapper object, not a dict.
        value = clean_query_value(value)
        return "price" if value is None and info.field_name == "sort" else value

    @field_validator("max_price_per_hour", mode="before")
    @classmethod
    def _plain_price(cls, value: Any) -> Any:
        # Decimal() would read Arabic-Indic or full-width digits, and exponents, as a price.
        if isinstance(value, str) and value.strip() and parse_plain_decimal(value) is None:
            raise ValueError("must be a price in USD written with the digits 0-9, e.g. 1.50")
        return value

    @field_validator("gpu_model", "region")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is None:
            return None
        lowered = value.lower()
        if not all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in lowered):
            raise ValueError("must contain only letters, digits and hyphens")
        return lowered

    @field_validator("tier")
    @classmethod
    def _tier(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_tiers(value)
        return value.lower()

    @property
    def tiers(self) -> tuple[int, ...] | None:
        return parse_tiers(self.tier) if self.tier else None

    def active(self) -> dict[str, Any]:
        """Fields set to something other than their default, for links and summaries."""
        return {
            key: value
            for key, value in self.model_dump(exclude_none=True).items()
            if not (key == "sort" and value == "price")
        }


# --- Cursors --------------------------------------------------------------------------------
def encode_cursor(*, sort: str, value: int | float, node_id: int) -> str:
    return cursors.encode_cursor({"s": sort, "v": value, "i": node_id})


def decode_cursor(cursor: str, *, sort: str) -> tuple[int | float, int]:
    invalid = ApplicationError("cursor: not a cursor this API returned; start again without it.", {"field": "cursor"})
    data = cursors.cursor_fields(cursor, {"s", "v", "i"}) if len(cursor) <= 200 else None
    if data is None:
        raise invalid
    value, node_id = data["v"], data["i"]
    if not cursors.is_row_id(node_id) or not isinstance(value, (int, float)) or isinstance(value, bool):
        raise invalid
    # Sort values are database integers (or a 0-1 uptime): anything beyond overflows there.
    if not math.isfinite(value) or not -(2**63) < value < 2**63:
        raise invalid
    if data["s"] != sort:
        raise ApplicationError(
            f"cursor: it was made for sort={data['s']!r}, not sort={sort!r}; start again without a cursor.",
            {"field": "cursor"},
        )
    return value, node_id
