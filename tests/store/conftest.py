from __future__ import annotations

import pytest

from marketplace.models import Template
from tests.e2e.conftest import (  # noqa: F401 (Chromium for test_store_browser.py)
    browser,
    expected_console_errors,
    page,
    viewport,
)
from tests.factories import make_node, make_provider, make_user


@pytest.fixture
def templates(db) -> dict[str, Template]:
    """The seeded templates (the data migration's), by slug."""
    return {template.slug: template for template in Template.objects.all()}


@pytest.fixture
def market(db):
    """Two fizz RTX 4090s (one cheaper), an L40S in fizz mode, and a provider H100 box."""
    provider = make_provider()
    return {
        "cheap4090": make_node(provider=provider, gpu_price_per_hour_micros=150_000, region="us-east"),
        "dear4090": make_node(provider=provider, gpu_price_per_hour_micros=300_000, region="eu-west"),
        "l40s": make_node(provider=provider, gpu_model="l40s", gpu_price_per_hour_micros=800_000, region="us-west"),
        "h100": make_node(
            provider=make_provider(), gpu_model="h100", gpu_count=8, mode="provider", trust_tier=2,
            gpu_price_per_hour_micros=2_400_000, region="us-east", cpu_cores=128, memory_gb=1024, storage_gb=8000,
        ),
    }  # fmt: skip


@pytest.fixture
def renter(db):
    return make_user(is_developer=True)
