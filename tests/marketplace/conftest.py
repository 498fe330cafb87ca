from __future__ import annotations

import pytest

from providers.models import NodeMode, NodeStatus
from tests.factories import make_node, make_provider


@pytest.fixture
def market(db):
    """A small market whose every filter and sort result can be worked out by hand."""
    community = make_provider(display_name="Alice's rig")
    datacenter = make_provider(display_name="Acme Compute")
    nodes = {
        "cheap_3090": make_node(
            provider=community,
            gpu_model="rtx3090",
            gpu_price_per_hour_micros=150_000,
            region="eu-central",
            trust_tier=6,
            uptime_30d=0.86,
        ),
        "fizz_4090": make_node(
            provider=community,
            gpu_model="rtx4090",
            gpu_price_per_hour_micros=175_000,
            region="us-east",
            trust_tier=4,
            uptime_30d=0.96,
        ),
        "pricey_4090": make_node(
            provider=community,
            gpu_model="rtx4090",
            gpu_price_per_hour_micros=390_000,
            region="ap-northeast",
            trust_tier=5,
            uptime_30d=0.91,
        ),
        "h100x8": make_node(
            provider=datacenter,
            gpu_model="h100",
            gpu_count=8,
            gpu_price_per_hour_micros=2_100_000,
            region="us-west",
            mode=NodeMode.PROVIDER,
            trust_tier=1,
            uptime_30d=0.995,
            cpu_cores=192,
            memory_gb=2048,
            storage_gb=8000,
            available_gpus=6,
            cpu_price_per_core_month_micros=2_000_000,
        ),
        "a100x4": make_node(
            provider=datacenter,
            gpu_model="a100-80g",
            gpu_count=4,
            gpu_price_per_hour_micros=1_200_000,
            region="eu-west",
            mode=NodeMode.PROVIDER,
            trust_tier=2,
            uptime_30d=0.985,
            cpu_cores=64,
            memory_gb=512,
            storage_gb=4000,
        ),
        "l40s": make_node(
            provider=datacenter,
            gpu_model="l40s",
            gpu_count=2,
            gpu_price_per_hour_micros=800_000,
            region="eu-central",
            mode=NodeMode.PROVIDER,
            trust_tier=3,
            uptime_30d=0.975,
        ),
        # Not listed: each fails one condition of the catalog.
        "offline": make_node(provider=community, gpu_model="rtx4090", status=NodeStatus.OFFLINE),
        "maintenance": make_node(provider=community, gpu_model="rtx4090", in_maintenance=True),
        "fully_rented": make_node(
            provider=datacenter, gpu_model="h100", gpu_count=8, available_gpus=0, mode=NodeMode.PROVIDER, trust_tier=1
        ),
    }
    return nodes
