"""Small builders for test data (no factory library: the models are few and explicit)."""

from __future__ import annotations

import itertools

from django.utils import timezone

from accounts.models import User
from providers.models import GpuModel, Node, NodeMode, NodeStatus, ProviderProfile
from providers.pricing import node_price_per_hour_micros

_counter = itertools.count(1)


def make_user(*, email: str | None = None, password: str = "correct-horse-battery-staple", **fields) -> User:
    email = email or f"user{next(_counter)}@example.test"
    return User.objects.create_user(email=email, password=password, **fields)


def make_provider(*, display_name: str | None = None, user: User | None = None) -> ProviderProfile:
    user = user or make_user(is_provider=True)
    return ProviderProfile.objects.create(user=user, display_name=display_name or f"Provider {user.pk}")


def make_node(
    *,
    provider: ProviderProfile | None = None,
    gpu_model: str = "rtx4090",
    gpu_count: int = 1,
    region: str = "us-east",
    mode: str = NodeMode.FIZZ,
    gpu_price_per_hour_micros: int = 175_000,
    cpu_cores: int = 16,
    memory_gb: int = 64,
    storage_gb: int = 500,
    status: str = NodeStatus.ONLINE,
    trust_tier: int = 5,
    uptime_30d: float = 0.95,
    available_gpus: int | None = None,
    **fields,
) -> Node:
    provider = provider or make_provider()
    model = GpuModel.objects.get(slug=gpu_model)
    prices = {
        "cpu_price_per_core_month_micros": fields.pop("cpu_price_per_core_month_micros", 750_000),
        "memory_price_per_gb_month_micros": fields.pop("memory_price_per_gb_month_micros", 100_000),
        "storage_price_per_gb_month_micros": fields.pop("storage_price_per_gb_month_micros", 10_000),
    }
    price = node_price_per_hour_micros(
        gpu_count=gpu_count,
        gpu_price_per_hour_micros=gpu_price_per_hour_micros,
        cpu_cores=cpu_cores,
        cpu_price_per_core_month_micros=prices["cpu_price_per_core_month_micros"],
        memory_gb=memory_gb,
        memory_price_per_gb_month_micros=prices["memory_price_per_gb_month_micros"],
        storage_gb=storage_gb,
        storage_price_per_gb_month_micros=prices["storage_price_per_gb_month_micros"],
    )
    available = gpu_count if available_gpus is None else available_gpus
    defaults = {
        "uptime_1d": uptime_30d,
        "uptime_7d": uptime_30d,
        "bandwidth_mbps": 500,
        "last_seen_at": timezone.now(),
        "vram_gb": model.vram_gb,
        "gpu_tier": model.gpu_tier,
        "available_cpu_cores": cpu_cores,
        "available_memory_gb": memory_gb,
        "available_storage_gb": storage_gb,
        "stake_covered": True,
    }
    defaults.update(fields)
    return Node.objects.create(
        provider=provider,
        name=fields.pop("name", None) or f"node-{next(_counter)}",
        mode=mode,
        region_id=region,
        gpu_model=model,
        gpu_count=gpu_count,
        cpu_cores=cpu_cores,
        memory_gb=memory_gb,
        storage_gb=storage_gb,
        gpu_price_per_hour_micros=gpu_price_per_hour_micros,
        price_per_hour_micros=price,
        status=status,
        trust_tier=trust_tier,
        uptime_30d=uptime_30d,
        available_gpus=available,
        **prices,
        **{key: value for key, value in defaults.items() if key != "name"},
    )
