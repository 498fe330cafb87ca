from __future__ import annotations

import itertools

import pytest

from billing.services import topup_credit
from tests.factories import make_node, make_provider, make_user

_ids = itertools.count(1)

SPEC = """\
version: "2.0"
services:
  app:
    image: python:3.12-slim
    command: ["python", "-c", "print('hi')"]
    resources:
      cpu: {{units: 2}}
      memory: {{size: 4Gi}}
      storage: [{{size: 20Gi}}]
      gpu: {{units: 1, model: {model}}}
    price: {{token: USD, amount: {price}}}
deployment:
  duration: {duration}
  mode: {mode}
  attributes: {{region: {region}}}
"""


def spec_text(*, model="rtx4090", price="0.50", duration="24h", mode="fizz", region='""') -> str:
    return SPEC.format(model=model, price=price, duration=duration, mode=mode, region=region)


def fund(user, dollars: int = 100):
    key = f"test-topup-{next(_ids)}"
    topup_credit(user=user, amount=dollars * 1_000_000, reference_type="test", reference_id=key, idempotency_key=key)


@pytest.fixture
def renter(db):
    user = make_user(is_developer=True)
    fund(user)
    return user


@pytest.fixture
def market(db):
    """Three fizz RTX 4090 nodes and one H100 provider box, all listed."""
    provider = make_provider()
    return {
        "cheap": make_node(provider=provider, gpu_price_per_hour_micros=150_000, region="us-east", uptime_30d=0.90),
        "good": make_node(provider=provider, gpu_price_per_hour_micros=175_000, region="us-west", uptime_30d=0.999),
        "dear": make_node(provider=provider, gpu_price_per_hour_micros=300_000, region="eu-west", uptime_30d=0.99),
        "h100": make_node(
            provider=make_provider(), gpu_model="h100", gpu_count=8, mode="provider", trust_tier=2,
            gpu_price_per_hour_micros=2_400_000, region="us-east", cpu_cores=128, memory_gb=1024, storage_gb=8000,
        ),
    }  # fmt: skip
