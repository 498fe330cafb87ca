from __future__ import annotations

from decimal import Decimal

import pytest

from providers.models import GPU_TIER_MULTIPLIERS, GpuModel, Region
from providers.pricing import node_price_per_hour_micros

REQUIRED_MODELS = {
    "gtx1660",
    "rtx3060",
    "rtx3070",
    "rtx3080",
    "rtx3090",
    "rtx4070",
    "rtx4080",
    "rtx4090",
    "rtx5090",
    "a4000",
    "a5000",
    "a6000",
    "l4",
    "l40s",
    "a10",
    "a100-40g",
    "a100-80g",
    "h100",
    "h200",
    "b200",
    "mi300x",
    "apple-m1",
    "apple-m2",
    "apple-m3",
    "apple-m4",
}


@pytest.mark.django_db
def test_reference_gpu_models_are_loaded_by_migrations():
    slugs = set(GpuModel.objects.values_list("slug", flat=True))
    assert REQUIRED_MODELS <= slugs


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("slug", "tier", "multiplier"),
    [
        ("rtx4090", "medium-1", "1.0"),
        ("rtx5090", "medium-2", "1.5"),
        ("l40s", "medium-2", "1.5"),
        ("a6000", "high-1", "2"),
        ("a100-40g", "high-2", "3"),
        ("a100-80g", "ultra-high-1", "6"),
        ("h100", "ultra-high-2", "12"),
        ("h200", "ultra-high-3", "15"),
        ("b200", "ultra-high-3", "15"),
        ("gtx1660", "entry-1", "0.1"),
        ("rtx3060", "entry-2", "0.25"),
    ],
)
def test_gpu_tiers_follow_the_protocol_table(slug, tier, multiplier):
    model = GpuModel.objects.get(slug=slug)
    assert model.gpu_tier == tier
    assert model.multiplier == Decimal(multiplier)


@pytest.mark.django_db
def test_every_multiplier_matches_its_tier_and_apple_ranks_as_cpu():
    for model in GpuModel.objects.all():
        assert model.multiplier == GPU_TIER_MULTIPLIERS[model.gpu_tier], model.slug
        if model.vendor == "Apple":
            assert model.gpu_tier.startswith("cpu-") and Decimal("0.1") <= model.multiplier <= Decimal("1.0")


@pytest.mark.django_db
def test_regions_span_the_world():
    continents = set(Region.objects.values_list("continent", flat=True))
    assert {"north-america", "south-america", "europe", "asia", "africa", "oceania"} <= continents
    us_east = Region.objects.get(code="us-east")
    assert -90 <= us_east.latitude <= 90 and -180 <= us_east.longitude <= 180


def test_node_price_rounds_the_monthly_parts_once():
    # $0.175/GPU-h + (8 cores x $0.75 + 32 GB x $0.10 + 200 GB x $0.01) / 730 h = 0.175 + 11.2/730
    price = node_price_per_hour_micros(
        gpu_count=1,
        gpu_price_per_hour_micros=175_000,
        cpu_cores=8,
        cpu_price_per_core_month_micros=750_000,
        memory_gb=32,
        memory_price_per_gb_month_micros=100_000,
        storage_gb=200,
        storage_price_per_gb_month_micros=10_000,
    )
    assert price == 175_000 + 15_342  # 11.2 / 730 = 0.0153424..., rounded half-up to micros
