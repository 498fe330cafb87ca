from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from core import clock
from core.money import exact_usd
from providers import hooks, liveness
from providers.models import (
    SPON_DECIMALS,
    GpuModel,
    Node,
    NodeChallenge,
    NodeEra,
    NodeEvent,
    ProviderProfile,
    Region,
    StakeEvent,
)


def gpu_model_list() -> QuerySet[GpuModel]:
    return GpuModel.objects.all()


_gpu_model_kinds: dict[str, str] = {}


def gpu_model_kind(slug: str) -> str:
    """'gpu', 'apple' or 'cpu' for a model slug, from a per-process copy of the reference data (a
    model's kind never changes), so listing offers costs no join and no extra query per page."""
    kind = _gpu_model_kinds.get(slug)
    if kind is None:
        _gpu_model_kinds.update(GpuModel.objects.values_list("slug", "kind"))
        kind = _gpu_model_kinds.get(slug, GpuModel.Kind.GPU)
    return kind


def region_list() -> QuerySet[Region]:
    return Region.objects.all()


def gpu_model_exists(slug: str) -> bool:
    return GpuModel.objects.filter(slug=slug).exists()


def region_exists(code: str) -> bool:
    return Region.objects.filter(code=code).exists()


# Region codes by continent, per process: the offers filter asks on every continent request, and
# regions are reference data. A change to a region empties this process's copy at once (signals,
# see ProvidersConfig.ready) and other processes' within REGION_CODES_SECONDS.
REGION_CODES_SECONDS = 60
_region_codes: dict[str, tuple[str, ...]] = {}
_region_codes_read_at = 0.0


def region_codes_in(continent: str) -> tuple[str, ...]:
    global _region_codes, _region_codes_read_at
    if time.monotonic() - _region_codes_read_at > REGION_CODES_SECONDS:
        by_continent: dict[str, list[str]] = {}
        for code, region_continent in Region.objects.order_by("code").values_list("code", "continent"):
            by_continent.setdefault(region_continent, []).append(code)
        _region_codes = {key: tuple(codes) for key, codes in by_continent.items()}
        _region_codes_read_at = time.monotonic()
    return _region_codes.get(continent, ())


def region_codes_forget(**kwargs: Any) -> None:
    global _region_codes_read_at
    _region_codes_read_at = 0.0


def _utilization(usage: dict[str, Any]) -> dict[str, float | None]:
    gpu = usage.get("gpu_utilization_percent") or []
    return {
        "gpu_percent": round(sum(gpu) / len(gpu), 1) if gpu else None,
        "cpu_percent": usage.get("cpu_percent"),
        "memory_used_gb": usage.get("memory_used_gb"),
    }


def provider_node_rows(*, provider: ProviderProfile, node_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """The dashboard's nodes table: the database row plus the freshest heartbeat from the cache."""
    nodes = Node.objects.filter(provider=provider).select_related("gpu_model").order_by("id")
    if node_ids is not None:
        nodes = nodes.filter(id__in=node_ids)
    nodes = list(nodes)
    heartbeats = liveness.last_heartbeats([n.id for n in nodes])
    leases = hooks.lease_summaries([n.id for n in nodes])
    now = clock.now()
    rows = []
    for node in nodes:
        hb = heartbeats.get(node.id)
        last_seen = max(filter(None, [hb["at"] if hb else None, node.last_seen_at]), default=None)
        usage = hb["usage"] if hb else node.usage
        rows.append(
            {
                "node": node,
                "id": node.id,
                "name": node.name,
                "mode": node.mode,
                "region": node.region_id,
                "gpu_model": node.gpu_model_id,
                "gpu_model_name": node.gpu_model.name,
                "gpu_count": node.gpu_count,
                "gpu_tier": node.gpu_tier,
                "trust_tier": node.trust_tier,
                "status": node.status,
                "in_maintenance": node.in_maintenance,
                "stake_covered": node.stake_covered,
                "needs_review": node.needs_review,
                "last_seen_at": last_seen,
                "seconds_since_seen": (now - last_seen).total_seconds() if last_seen else None,
                "uptime_1d": node.uptime_1d,
                "uptime_7d": node.uptime_7d,
                "uptime_30d": node.uptime_30d,
                "price_per_hour": exact_usd(node.price_per_hour_micros),
                "lease": leases.get(node.id, ""),
                "utilization": _utilization(usage or {}),
                "in_cooldown": bool(node.rewards_eligible_from and node.rewards_eligible_from > now),
                "rewards_eligible_from": node.rewards_eligible_from,
            }
        )
    return rows


def node_events(*, node: Node, limit: int = 50) -> QuerySet[NodeEvent]:
    return NodeEvent.objects.filter(node=node)[:limit]


def node_challenges(*, node: Node, limit: int = 20) -> QuerySet[NodeChallenge]:
    return NodeChallenge.objects.filter(node=node)[:limit]


def node_eras(*, node: Node, limit: int = 30) -> QuerySet[NodeEra]:
    return NodeEra.objects.filter(node=node)[:limit]


def min_stake_per_gpu_base_units() -> Decimal:
    """The stake each unit (a GPU, or a CPU-only or Apple machine) needs, in $SPON base units."""
    return (Decimal(settings.MIN_STAKE_PER_GPU_SPON) * (10**SPON_DECIMALS)).to_integral_value()


def stake_nodes(*, provider: ProviderProfile) -> QuerySet[Node]:
    """The nodes the provider's stake must cover, oldest first: every agent-run node not disabled.

    `stake_coverage_refresh` marks these covered or not (the matchmaker matches covered nodes
    only) and `stake_summary` adds up what they need, so the two never disagree. Each counts its
    `gpu_count` units; a CPU-only or Apple machine registers as one unit (providers.registration)."""
    return Node.objects.filter(provider=provider, is_simulated=False).exclude(status="disabled").order_by("id")


def stake_summary(*, provider: ProviderProfile) -> dict[str, Any]:
    """Staked $SPON, the minimum for the provider's units (GPUs; a CPU-only or Apple machine is
    one), and which nodes it does not cover."""
    unit = Decimal(10) ** SPON_DECIMALS
    nodes = stake_nodes(provider=provider)
    units = {kind: 0 for kind in GpuModel.Kind.values}
    for kind, gpu_count in nodes.values_list("gpu_model__kind", "gpu_count"):
        units[kind] += gpu_count
    gpus = sum(units.values())
    required = min_stake_per_gpu_base_units() * gpus
    staked = provider.staked_spon
    demo = Node.objects.filter(provider=provider, is_simulated=True).exclude(status="disabled")
    return {
        "staked": staked / unit,
        "required": required / unit,
        "shortfall": max(Decimal(0), (required - staked) / unit),
        "min_per_gpu": Decimal(settings.MIN_STAKE_PER_GPU_SPON),
        "gpus": gpus,  # units the stake must cover: GPUs, and one per CPU-only or Apple machine
        "gpu_units": units[GpuModel.Kind.GPU],
        "cpu_machines": units[GpuModel.Kind.CPU],
        "apple_machines": units[GpuModel.Kind.APPLE],
        "demo_gpus": sum(demo.values_list("gpu_count", flat=True)),  # need no stake
        "uncovered_nodes": list(nodes.filter(stake_covered=False).values_list("name", flat=True)),
        "history": StakeEvent.objects.filter(provider=provider).select_related("created_by")[:50],
    }
