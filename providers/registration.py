"""Node registration: a token and a hardware report become a node with a secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction

from core import clock
from core.errors import ApplicationError
from providers import liveness
from providers.hardware import apple_model_slug, cpu_model_slug, gpu_model_slug
from providers.models import (
    GpuModel,
    Node,
    NodeEvent,
    NodeEventKind,
    NodeMode,
    NodeStatus,
    NodeToken,
    ProviderGpuPrice,
    ProviderProfile,
    Region,
)
from providers.pricing import (
    FIZZ_CPU_PER_CORE_MONTH,
    FIZZ_MEMORY_PER_GB_MONTH,
    FIZZ_STORAGE_PER_GB_MONTH,
    fizz_gpu_price_per_hour_micros,
    node_price_per_hour_micros,
)
from providers.selectors import stake_summary
from providers.services import MAX_PRICE_PER_GPU_HOUR_MICROS, stake_coverage_refresh, token_hash, usd_to_micros

# protocol-facts.md: what a Fizz node should have. Below it the node still joins, with a warning.
FIZZ_RECOMMENDED = {"cpu_cores": 8, "memory_gb": 16, "storage_gb": 100}


@dataclass
class Registration:
    node: Node
    secret: str
    created: bool
    warnings: list[str]
    rentable: dict[str, Any] = field(default_factory=dict)


def token_find(raw_token: str) -> NodeToken | None:
    if not raw_token.startswith("fzt_") or len(raw_token) > 100:
        return None
    return NodeToken.objects.filter(token_hash=token_hash(raw_token), revoked_at__isnull=True).first()


def _model_for(hardware: dict[str, Any]) -> tuple[GpuModel, int]:
    """(model, gpu_count) from the report. CPU-only and Apple machines count as one unit."""
    gpus = hardware.get("gpus") or []
    if gpus:
        slugs = {gpu_model_slug(g["name"], g.get("memory_total_mib")) for g in gpus}
        if None in slugs:
            unknown = next(g["name"] for g in gpus if gpu_model_slug(g["name"], g.get("memory_total_mib")) is None)
            raise ApplicationError(
                f"The GPU {unknown!r} is not in the market's catalog yet, so it cannot be priced or tiered.",
                {"field": "hardware.gpus"},
            )
        if len(slugs) > 1:
            raise ApplicationError(
                f"This machine mixes GPU models ({', '.join(sorted(slugs))}); a node offers one model.",
                {"field": "hardware.gpus"},
            )
        return GpuModel.objects.get(slug=slugs.pop()), len(gpus)
    if hardware.get("apple_chip"):
        slug = apple_model_slug(hardware["apple_chip"])
        if slug is None or not GpuModel.objects.filter(slug=slug).exists():
            raise ApplicationError(
                f"The chip {hardware['apple_chip']!r} is not in the market's catalog yet.",
                {"field": "hardware.apple_chip"},
            )
        return GpuModel.objects.get(slug=slug), 1
    return GpuModel.objects.get(slug=cpu_model_slug(hardware["cpu_cores"])), 1


def _unique_name(provider_id: int, label: str, node_id: int | None = None) -> str:
    base = (" ".join(label.split()) or "node")[:70]
    name, suffix = base, 2
    while Node.objects.filter(provider_id=provider_id, name=name).exclude(id=node_id).exists():
        name = f"{base}-{suffix}"
        suffix += 1
    return name


@transaction.atomic
def node_register(*, raw_token: str, report: dict[str, Any]) -> Registration:
    """Register (or re-register from the same machine) the node a token is for.

    A token binds to the first machine that uses it; the same machine gets the same node and a
    new secret, another machine a 409. Hardware decides the model and tier, never the agent."""
    token = token_find(raw_token)
    if token is None:
        raise ApplicationError("The node token was not accepted: it is wrong or has been revoked.", status=401)
    token = NodeToken.objects.select_for_update(of=("self",)).select_related("provider", "region").get(id=token.id)
    provider = token.provider
    machine_id = report["machine_id"]
    if token.node_id and token.machine_id != machine_id:
        raise ApplicationError(
            f"This token is already in use by node {token.node_id} on another machine. "
            "Make a new token in the dashboard for this machine.",
            {"node_id": token.node_id},
            status=409,
        )
    hardware = report["hardware"]
    model, gpu_count = _model_for(hardware)
    mode = token.mode
    if mode == NodeMode.FIZZ and gpu_count > 1:
        raise ApplicationError(
            f"A Fizz node has one GPU and this machine has {gpu_count}. "
            "Use a provider-mode token for multi-GPU machines.",
            {"field": "hardware.gpus"},
        )
    region = _region_for(report.get("region"), token)
    gpu_price = _gpu_price(report.get("price_per_hour"), mode=mode, model=model, provider_id=provider.id)
    if mode == NodeMode.FIZZ:
        cpu_price, memory_price, storage_price = (
            FIZZ_CPU_PER_CORE_MONTH,
            FIZZ_MEMORY_PER_GB_MONTH,
            FIZZ_STORAGE_PER_GB_MONTH,
        )
    else:
        cpu_price = provider.cpu_price_per_core_month_micros
        memory_price = provider.memory_price_per_gb_month_micros
        storage_price = provider.storage_price_per_gb_month_micros
    cpu_cores, memory_gb, storage_gb = hardware["cpu_cores"], hardware["memory_gb"], hardware["storage_gb"]
    if storage_gb < 1:
        raise ApplicationError("The machine has no free disk space to offer.", {"field": "hardware.storage_gb"})
    vram_gb = model.vram_gb if model.kind == GpuModel.Kind.GPU else memory_gb
    if model.kind == GpuModel.Kind.GPU and hardware["gpus"][0].get("memory_total_mib"):
        vram_gb = max(1, round(hardware["gpus"][0]["memory_total_mib"] / 1024))

    # A machine that lost its config registers again with a new token: reuse its node.
    node = None
    if token.node_id:
        node = Node.objects.select_for_update().get(id=token.node_id)
    else:
        existing = Node.objects.filter(provider=provider, machine_id=machine_id, is_simulated=False).first()
        if existing is not None:
            live = NodeToken.objects.filter(node=existing, revoked_at__isnull=True).first()
            if live is not None:
                raise ApplicationError(
                    f"This machine is already node {existing.id} (token {live.prefix}…). "
                    "Use that token, or revoke it first.",
                    {"node_id": existing.id},
                    status=409,
                )
            node = Node.objects.select_for_update().get(id=existing.id)
            NodeToken.objects.filter(node=node).update(node=None)
        elif (
            Node.objects.filter(machine_id=machine_id, is_simulated=False).exclude(status=NodeStatus.DISABLED).exists()
        ):
            raise ApplicationError(
                "This machine is already registered by another provider: one node per device.", status=409
            )

    now = clock.now()
    fields = {
        "mode": mode,
        "region": region,
        "gpu_model": model,
        "gpu_count": gpu_count,
        "vram_gb": vram_gb,
        "gpu_tier": model.gpu_tier,
        "cpu_cores": cpu_cores,
        "memory_gb": memory_gb,
        "storage_gb": storage_gb,
        "bandwidth_mbps": hardware.get("bandwidth_mbps") or 0,
        "gpu_price_per_hour_micros": gpu_price,
        "cpu_price_per_core_month_micros": cpu_price,
        "memory_price_per_gb_month_micros": memory_price,
        "storage_price_per_gb_month_micros": storage_price,
        "price_per_hour_micros": node_price_per_hour_micros(
            gpu_count=gpu_count,
            gpu_price_per_hour_micros=gpu_price,
            cpu_cores=cpu_cores,
            cpu_price_per_core_month_micros=cpu_price,
            memory_gb=memory_gb,
            memory_price_per_gb_month_micros=memory_price,
            storage_gb=storage_gb,
            storage_price_per_gb_month_micros=storage_price,
        ),
        "machine_id": machine_id,
        "hostname": report["hostname"],
        "agent_version": report["agent_version"],
        "runtime": report["runtime"],
        "os": report["os"],
        "arch": report["arch"],
        "cpu_model": hardware.get("cpu_model") or "",
        "driver_version": hardware.get("driver_version") or "",
        "cuda_version": hardware.get("cuda_version") or "",
        "hardware": hardware,
    }
    created = node is None
    if created:
        node = Node(
            provider=provider,
            # Renters see the name: the token's label, which the provider chose, never the machine's
            # hostname (only its owner sees that, on the node's page).
            name=_unique_name(provider.id, token.label),
            status=NodeStatus.PENDING,
            registered_at=now,
            # Judged on its life so far, which has had no downtime yet (providers.uptime).
            uptime_1d=1.0,
            uptime_7d=1.0,
            uptime_30d=1.0,
            available_gpus=gpu_count,
            available_cpu_cores=cpu_cores,
            available_memory_gb=memory_gb,
            available_storage_gb=storage_gb,
            **fields,
        )
    else:
        # Capacity in use by leases stays in use; the new totals bound what is free.
        used = {
            "gpus": node.gpu_count - node.available_gpus,
            "cpu": node.cpu_cores - node.available_cpu_cores,
            "mem": node.memory_gb - node.available_memory_gb,
            "disk": node.storage_gb - node.available_storage_gb,
        }
        for key, value in fields.items():
            setattr(node, key, value)
        node.available_gpus = max(0, gpu_count - used["gpus"])
        node.available_cpu_cores = max(0, cpu_cores - used["cpu"])
        node.available_memory_gb = max(0, memory_gb - used["mem"])
        node.available_storage_gb = max(0, storage_gb - used["disk"])
        if node.registered_at is None:
            node.registered_at = now
    node.save()
    secret = liveness.node_secret_new(node.id)
    node.secret_hash = liveness.secret_hash(secret)
    node.save(update_fields=["secret_hash"])
    token.node = node
    token.machine_id = machine_id
    token.last_used_at = now
    token.save(update_fields=["node", "machine_id", "last_used_at"])
    NodeEvent.objects.create(
        node=node,
        kind=NodeEventKind.REGISTERED,
        at=now,
        message=f"{'registered' if created else 'registered again'} from {report['hostname'][:100]} "
        f"(agent {report['agent_version']}, {gpu_count}× {model.slug})",
    )
    stake_coverage_refresh(provider=provider)
    node.refresh_from_db()
    transaction.on_commit(lambda: liveness.node_auth_forget(node.id))
    return Registration(
        node=node,
        secret=secret,
        created=created,
        warnings=_warnings(mode, hardware),
        rentable=_rentable(node=node, provider=provider),
    )


def _region_for(code: str | None, token: NodeToken) -> Region:
    if code:
        region = Region.objects.filter(code=code).first()
        if region is None:
            raise ApplicationError(f"Unknown region {code!r}.", {"field": "region"})
        return region
    region = token.region or token.provider.default_region
    if region is None:
        raise ApplicationError("Say which region this machine is in (--region).", {"field": "region"})
    return region


def _gpu_price(price: str | None, *, mode: str, model: GpuModel, provider_id: int) -> int:
    if price not in (None, ""):
        return usd_to_micros(Decimal(str(price)), field="price_per_hour", maximum=MAX_PRICE_PER_GPU_HOUR_MICROS)
    if mode == NodeMode.FIZZ:
        return fizz_gpu_price_per_hour_micros(model.multiplier)
    listed = ProviderGpuPrice.objects.filter(provider_id=provider_id, gpu_model=model).first()
    if listed is None:
        raise ApplicationError(
            f"Set your price for {model.name} on the provider prices page, or start the agent with --price-per-hour.",
            {"field": "price_per_hour"},
        )
    return listed.price_per_hour_micros


def _warnings(mode: str, hardware: dict[str, Any]) -> list[str]:
    if mode != NodeMode.FIZZ:
        return []
    warnings = []
    for key, label in (("cpu_cores", "CPU cores"), ("memory_gb", "GB of memory"), ("storage_gb", "GB of free disk")):
        if hardware[key] < FIZZ_RECOMMENDED[key]:
            warnings.append(
                f"Fizz nodes should have at least {FIZZ_RECOMMENDED[key]} {label}; this one has {hardware[key]}."
            )
    return warnings


def _spon(amount: Decimal) -> str:
    return f"{amount.normalize():f}"


def _rentable(*, node: Node, provider: ProviderProfile) -> dict[str, Any]:
    """What makes this node rentable, for the agent to log at start (sdk/PROTOCOL.md, `rentable`):
    the provider's stake must cover MIN_STAKE_PER_GPU_SPON per GPU of its nodes, a CPU-only or
    Apple machine counting as one GPU (the same figures as the dashboard's stake card)."""
    summary = stake_summary(provider=provider)
    per_gpu, staked, required = summary["min_per_gpu"], summary["staked"], summary["required"]
    rule = f"this market needs {_spon(per_gpu)} $SPON staked per GPU (a CPU-only machine counts as one)"
    if not per_gpu:
        message = "This market needs no stake: renters can be matched to this node while it is online."
    elif node.stake_covered:
        message = (
            f"Renters can be matched to this node while it is online: {rule}, "
            f"and your stake of {_spon(staked)} $SPON covers the {_spon(required)} $SPON your nodes need."
        )
    else:
        message = (
            f"Renters cannot be matched to this node until your stake covers it: {rule}, "
            f"so your nodes need {_spon(required)} $SPON and you have staked {_spon(staked)}. "
            f"Stake {_spon(summary['shortfall'])} $SPON more (Provider, then Stake, on the site)."
        )
    return {
        "stake_covered": node.stake_covered,
        "min_stake_per_gpu_spon": _spon(per_gpu),
        "units": node.gpu_count,
        "staked_spon": _spon(staked),
        "required_spon": _spon(required),
        "message": message,
    }
