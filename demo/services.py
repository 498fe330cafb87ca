"""Demo market: a realistic, reproducible GPU marketplace for development, demos and benchmarks.

Everything is drawn from one `random.Random(seed)`, so the same (nodes, seed) always gives the
same market. Demo data is recognised in the database, never in a cache:

- every demo provider user has an e-mail under `@demo.spheron.test` (a reserved `.test` name);
  their profiles and nodes are demo data;
- the "Demo Provider" login owns a fixed set of node names (`DEMO_PROVIDER_NODES`);
- a `DemoMarket` row records what was seeded (seed, nodes, generator version), so a repeated
  run with the same arguments is a cheap no-op.

Re-seeding with other arguments deletes exactly that data and nothing else (the eras the Demo
Provider's nodes were rewarded in are run again without them, as for any deleted node).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Protocol

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from billing.models import AccountKind, TransactionKind
from billing.services import account_get, adjustment_post, transaction_post
from chain.models import Rate
from core import clock
from marketplace.models import DemoMarket, Lease
from providers.era_rewards import SPON_SYMBOL, era_rewards_run
from providers.liveness import challenge_evaluate
from providers.models import (
    SPON_DECIMALS,
    ChallengeStatus,
    EraOutcome,
    GpuModel,
    Node,
    NodeChallenge,
    NodeEra,
    NodeEvent,
    NodeEventKind,
    NodeMode,
    NodeOutage,
    NodeReward,
    NodeStatus,
    OutageKind,
    ProviderProfile,
    Region,
    StakeEvent,
    StakeEventKind,
)
from providers.pricing import (
    FIZZ_CPU_PER_CORE_MONTH,
    FIZZ_MEMORY_PER_GB_MONTH,
    FIZZ_STORAGE_PER_GB_MONTH,
    node_price_per_hour_micros,
)
from providers.services import provider_prices_update, stake_record
from providers.uptime import ERA, era_outcome, last_era_end, uptime_between

DEMO_DOMAIN = "demo.spheron.test"
DEMO_PASSWORD = "spheron-demo"
MAX_DEMO_NODES = 1_000_000
MAX_SEED = 2**63 - 1  # recorded in a bounded text field
BATCH_SIZE = 2000
# Bump when the generator changes, so that an older market with the same arguments is rebuilt.
GENERATOR_VERSION = 2  # 2: every demo provider has a recorded stake that covers its nodes

DEVELOPER_EMAIL = "developer@spheron.test"
DEVELOPER_CREDIT_MICROS = 100_000_000  # $100 of demo credits, so a deployment can be tried at once
PROVIDER_EARNINGS_MICROS = 250_000_000  # $250 of settled demo earnings, so a payout can be tried at once
PROVIDER_EMAIL = "provider@spheron.test"
DEMO_PROVIDER_STAKE_SPON = "10000"  # the demo provider's $SPON stake, recorded as its first stake event
# The market's other providers stake this many times the minimum their GPUs need (datacenters more),
# drawn from their own generator so the market's nodes do not depend on it.
OPERATOR_STAKE_COVER = (1.0, 4.0)
COMPANY_STAKE_COVER = (2.0, 12.0)
ADMIN_EMAIL = "admin@spheron.test"


class _Writer(Protocol):
    def write(self, text: str, /) -> object: ...


@dataclass(frozen=True)
class DemoLogin:
    role: str
    email: str
    password: str


@dataclass(frozen=True)
class DemoSeedResult:
    nodes: int
    seed: int
    created: bool  # False when the same demo market was already there
    datacenter_providers: int
    community_operators: int
    logins: tuple[DemoLogin, ...]
    seconds: float
    # Set when another market was asked for but the one in the database was kept: why, and how to
    # get the one asked for.
    kept_because: str = ""


DEMO_LOGINS = (
    DemoLogin("developer", DEVELOPER_EMAIL, DEMO_PASSWORD),
    DemoLogin("provider", PROVIDER_EMAIL, DEMO_PASSWORD),
    DemoLogin("admin", ADMIN_EMAIL, DEMO_PASSWORD),
)


# --- Market shape ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _GpuMarket:
    weight: float  # relative share of nodes
    hardware: str  # consumer-low | consumer-high | workstation | datacenter | flagship | apple
    provider_share: float  # chance that a node with this GPU runs in provider mode
    price_low: int  # provider mode, micro-USD per GPU-hour (protocol-facts.md price guide)
    price_high: int
    fizz_price: int  # the protocol's fixed Fizz rate per GPU-hour; 0 = not offered on Fizz


# RTX 3090 + 4090 are ~37% of nodes, Apple machines ~6%, H200/B200/MI300X ~1.5%.
GPU_MARKET: dict[str, _GpuMarket] = {
    "gtx1660": _GpuMarket(1.5, "consumer-low", 0.05, 40_000, 80_000, 50_000),
    "rtx3060": _GpuMarket(6, "consumer-low", 0.08, 60_000, 120_000, 80_000),
    "rtx3070": _GpuMarket(5, "consumer-low", 0.08, 80_000, 140_000, 100_000),
    "rtx3080": _GpuMarket(7, "consumer-high", 0.10, 100_000, 180_000, 120_000),
    "rtx3090": _GpuMarket(17, "consumer-high", 0.12, 150_000, 300_000, 160_000),
    "rtx4070": _GpuMarket(5, "consumer-low", 0.08, 100_000, 180_000, 120_000),
    "rtx4080": _GpuMarket(6, "consumer-high", 0.12, 140_000, 280_000, 150_000),
    "rtx4090": _GpuMarket(20, "consumer-high", 0.18, 150_000, 400_000, 175_000),
    "rtx5090": _GpuMarket(5, "consumer-high", 0.25, 350_000, 750_000, 400_000),
    "a4000": _GpuMarket(2, "workstation", 0.45, 120_000, 250_000, 150_000),
    "a5000": _GpuMarket(2, "workstation", 0.55, 180_000, 350_000, 220_000),
    "a6000": _GpuMarket(2.5, "workstation", 0.75, 400_000, 800_000, 450_000),
    "l4": _GpuMarket(1.5, "workstation", 0.85, 300_000, 550_000, 350_000),
    "a10": _GpuMarket(1.5, "workstation", 0.85, 350_000, 700_000, 400_000),
    "l40s": _GpuMarket(2, "datacenter", 0.90, 700_000, 1_100_000, 800_000),
    "a100-40g": _GpuMarket(1.5, "datacenter", 0.93, 600_000, 1_200_000, 700_000),
    "a100-80g": _GpuMarket(1.5, "datacenter", 0.95, 860_000, 1_500_000, 950_000),
    "h100": _GpuMarket(2, "datacenter", 0.98, 1_490_000, 2_700_000, 1_600_000),
    "h200": _GpuMarket(0.6, "flagship", 1.0, 2_500_000, 4_000_000, 0),
    "b200": _GpuMarket(0.4, "flagship", 1.0, 5_000_000, 7_000_000, 0),
    "mi300x": _GpuMarket(0.5, "flagship", 1.0, 1_500_000, 2_800_000, 0),
    "apple-m1": _GpuMarket(1.2, "apple", 0.0, 0, 0, 25_000),
    "apple-m1-max": _GpuMarket(0.6, "apple", 0.0, 0, 0, 70_000),
    "apple-m2": _GpuMarket(1.0, "apple", 0.0, 0, 0, 35_000),
    "apple-m2-max": _GpuMarket(0.5, "apple", 0.0, 0, 0, 90_000),
    "apple-m3": _GpuMarket(0.8, "apple", 0.0, 0, 0, 45_000),
    "apple-m3-max": _GpuMarket(0.4, "apple", 0.0, 0, 0, 120_000),
    "apple-m4": _GpuMarket(1.0, "apple", 0.0, 0, 0, 50_000),
    "apple-m4-max": _GpuMarket(0.5, "apple", 0.0, 0, 0, 160_000),
}

# Apple machines: (CPU cores, unified memory GB) as sold; Fizz needs at least 16 GB of RAM,
# so the 8 GB base models are left out.
APPLE_CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "apple-m1": ((8,), (16,)),
    "apple-m1-max": ((10,), (32, 64)),
    "apple-m2": ((8,), (16, 24)),
    "apple-m2-max": ((12,), (32, 64, 96)),
    "apple-m3": ((8,), (16, 24)),
    "apple-m3-max": ((14, 16), (36, 48, 64, 96, 128)),
    "apple-m4": ((10,), (16, 24, 32)),
    "apple-m4-max": ((14, 16), (36, 48, 64, 128)),
}

REGION_WEIGHTS: dict[str, float] = {
    "us-east": 14, "us-west": 11, "eu-central": 12, "eu-west": 10, "us-central": 6, "us-south": 5,
    "ca-central": 4, "uk-south": 5, "eu-north": 4, "eu-south": 3, "eu-east": 3, "me-central": 2,
    "ap-south": 3, "ap-southeast": 4, "ap-east": 3, "ap-northeast": 4, "kr-central": 2, "au-east": 2,
    "sa-east": 1.5, "af-south": 1,
}  # fmt: skip

# Fictional datacenter companies.
COMPANY_NAMES = (
    "Lumenforge Cloud", "Cobalt Grid Compute", "Arcturus GPU", "Tessellate Labs", "Helio Datacenters",
    "Fjordline Compute", "Quasar Metal", "Stratus Foundry", "Kilnworks AI Cloud", "Borealis Compute",
    "Meridian Racks", "Obsidian GPU Cloud", "Pinecrest Datacenters", "Ironwood Compute", "Sable Systems",
    "Cirrus Forge", "Tidewater Compute", "Granite Peak GPU", "Emberlight Cloud", "Lattice Compute",
    "Polaris Racks", "Vertex Harbor", "Solstice GPU", "Anvilcloud", "Halcyon Compute",
    "Redwood AI Infra", "Kestrel Cloud", "Auric Compute", "Zephyr Datacenters", "Monolith GPU",
    "Atlasforge", "Cinder Compute", "Skyforge Labs", "Basalt Cloud", "Aurora Metal",
    "Orchid Compute", "Driftwood GPU", "Tundra Compute", "Nightjar Cloud", "Quartzline AI",
)  # fmt: skip
COMPANY_EMAIL_PREFIX = "ops."  # community operators' addresses never start with it
NODES_PER_COMPANY = 12  # how many provider-mode nodes justify one more company (until the list runs out)

HANDLE_ADJECTIVES = (
    "quiet", "rapid", "amber", "lucky", "brave", "cosmic", "frosty", "golden", "hidden", "humble", "jolly", "lunar",
    "mellow", "misty", "noble", "plucky", "rustic", "silent", "solar", "stormy", "sunny", "swift", "tidy", "witty",
)  # fmt: skip
HANDLE_ANIMALS = (
    "otter", "falcon", "badger", "lynx", "heron", "panda", "walrus", "gecko", "marten", "osprey", "bison", "ibis",
    "koala", "puffin", "raven", "yak", "wombat", "narwhal", "tapir", "vole", "moose", "ferret", "kiwi", "orca",
)  # fmt: skip
PC_HOSTS = ("tower", "rig", "desktop", "homelab", "workstation", "garage", "studio", "basement", "attic", "den")
APPLE_HOSTS = ("mac-studio", "mac-mini", "macbook-pro", "imac", "mac-pro")

# The "Demo Provider" login's own nodes, in both modes: (name, model, mode, GPUs, region).
DEMO_PROVIDER_NODES: tuple[tuple[str, str, str, int, str], ...] = (
    ("demo-h100x8-us-east", "h100", NodeMode.PROVIDER, 8, "us-east"),
    ("demo-rtx4090-eu-west", "rtx4090", NodeMode.FIZZ, 1, "eu-west"),
    ("demo-a100-80gx4-eu-central", "a100-80g", NodeMode.PROVIDER, 4, "eu-central"),
    ("demo-m2-max-us-west", "apple-m2-max", NodeMode.FIZZ, 1, "us-west"),
    ("demo-l40sx2-ap-southeast", "l40s", NodeMode.PROVIDER, 2, "ap-southeast"),
    ("demo-rtx3090-us-east", "rtx3090", NodeMode.FIZZ, 1, "us-east"),
)
DEMO_PROVIDER_NODE_NAMES = tuple(spec[0] for spec in DEMO_PROVIDER_NODES)

# The Demo Provider's rewards (issue 22): the last DEMO_REWARD_ERAS closed eras of its own nodes, each
# rewarded by providers.era_rewards as the beat's era close would. What happened to the nodes, by
# (node name, eras ago; 1 = the last closed era): offline as (UTC hour, minutes); a maintenance window
# as (UTC hour, minutes); one failed liveness challenge (its hour), which forfeits that era.
DEMO_REWARD_ERAS = 7
DEMO_SPON_USD = Decimal("0.05")  # the SPON rate recorded (source "demo") when there is none
DEMO_RATE_SOURCE = "demo"
DEMO_NODE_BORN_DAYS = 30  # the nodes are dated back this far before the last era's end (30-day uptime)
DEMO_OFFLINE: dict[tuple[str, int], tuple[float, int]] = {
    ("demo-h100x8-us-east", 5): (13.25, 80),
    ("demo-rtx3090-us-east", 6): (19.5, 115),
    ("demo-l40sx2-ap-southeast", 2): (3.0, 45),
}
DEMO_MAINTENANCE: dict[tuple[str, int], tuple[float, int]] = {("demo-a100-80gx4-eu-central", 4): (1.0, 240)}
DEMO_FAILED_CHALLENGE: dict[tuple[str, int], int] = {("demo-rtx4090-eu-west", 3): 9}
DEMO_CHALLENGE_HOURS = (3, 9, 15, 21)  # a liveness challenge about every six hours, passed unless failed above

# Trust tiers: 30-day uptime floor (protocol-facts.md) and the ceiling we draw up to.
TIER_UPTIME_FLOOR = {1: 0.99, 2: 0.98, 3: 0.97, 4: 0.95, 5: 0.90, 6: 0.85, 7: 0.75}
TIER_UPTIME_CEILING = {1: 1.0, 2: 0.995, 3: 0.99, 4: 1.0, 5: 0.97, 6: 0.94, 7: 0.95}


class _Weighted:
    """A weighted choice with precomputed cumulative weights (rng.choices recomputes them per call)."""

    def __init__(self, options: Sequence, weights: Sequence[float]) -> None:
        self.options = tuple(options)
        self.cumulative = list(itertools.accumulate(weights))
        self.total = self.cumulative[-1]

    def __call__(self, rng: random.Random):
        return self.options[bisect.bisect(self.cumulative, rng.random() * self.total)]


FIZZ_TIERS = _Weighted((4, 5, 6, 7), (25, 30, 25, 20))
PROVIDER_TIERS = _Weighted((1, 2, 3), (35, 40, 25))
FIZZ_BANDWIDTH = _Weighted((50, 100, 200, 300, 500, 1000, 2500), (8, 20, 15, 12, 20, 22, 3))
FIZZ_STORAGE = _Weighted((200, 256, 480, 500, 960, 1000, 1800, 2000), (5, 8, 12, 20, 15, 22, 6, 12))
FIZZ_HARDWARE = {
    # (CPU cores, RAM GB)
    "consumer-low": (_Weighted((8, 12, 16), (40, 30, 30)), _Weighted((16, 32, 64), (35, 50, 15))),
    "consumer-high": (_Weighted((12, 16, 20, 24, 32), (15, 35, 15, 25, 10)), _Weighted((32, 64, 128), (40, 45, 15))),
    "workstation": (_Weighted((16, 24, 32), (40, 30, 30)), _Weighted((64, 128), (60, 40))),
    "datacenter": (_Weighted((16, 24, 32), (30, 30, 40)), _Weighted((64, 128), (40, 60))),
}
PROVIDER_GPU_COUNTS = {
    "consumer-low": _Weighted((1, 2, 4, 8), (35, 25, 30, 10)),
    "consumer-high": _Weighted((1, 2, 4, 8), (30, 25, 30, 15)),
    "workstation": _Weighted((1, 2, 4, 8), (20, 20, 35, 25)),
    "datacenter": _Weighted((1, 2, 4, 8), (8, 7, 20, 65)),
    "flagship": _Weighted((4, 8), (10, 90)),
}
# Provider servers, per GPU: (CPU cores, RAM GB, NVMe GB, bandwidth Mbps choices)
PROVIDER_HARDWARE = {
    "consumer-low": (
        _Weighted((4, 6, 8), (30, 40, 30)),
        _Weighted((16, 32), (50, 50)),
        _Weighted((250, 500), (50, 50)),
    ),
    "consumer-high": (
        _Weighted((4, 6, 8, 12), (20, 30, 35, 15)),
        _Weighted((32, 48, 64), (40, 20, 40)),
        _Weighted((500, 1000, 2000), (35, 45, 20)),
    ),
    "workstation": (
        _Weighted((6, 8, 12, 16), (20, 35, 30, 15)),
        _Weighted((32, 64, 96, 128), (20, 40, 20, 20)),
        _Weighted((500, 1000, 1920), (25, 50, 25)),
    ),
    "datacenter": (
        _Weighted((12, 14, 16, 24, 28), (20, 20, 25, 20, 15)),
        _Weighted((128, 192, 256), (35, 30, 35)),
        _Weighted((960, 1920, 3840), (30, 45, 25)),
    ),
    "flagship": (
        _Weighted((14, 16, 24, 28), (30, 25, 25, 20)),
        _Weighted((256, 384), (70, 30)),
        _Weighted((1920, 3840, 7680), (30, 50, 20)),
    ),
}
PROVIDER_BANDWIDTH = {
    "consumer-low": _Weighted((1000, 2500, 10000), (50, 30, 20)),
    "consumer-high": _Weighted((1000, 2500, 10000), (40, 30, 30)),
    "workstation": _Weighted((1000, 10000, 25000), (30, 60, 10)),
    "datacenter": _Weighted((10000, 25000, 100000), (75, 20, 5)),
    "flagship": _Weighted((10000, 25000, 100000), (60, 30, 10)),
}
OPERATOR_NODE_COUNTS = _Weighted((1, 2, 3), (50, 30, 20))


# --- Owners ----------------------------------------------------------------------------------
@dataclass
class _Owner:
    email: str
    display_name: str
    regions: tuple[str, ...]
    is_verified: bool
    payout_evm_address: str
    # Provider mode: the company's own resource prices and how it prices GPUs against the market.
    cpu_price: int = FIZZ_CPU_PER_CORE_MONTH
    memory_price: int = FIZZ_MEMORY_PER_GB_MONTH
    storage_price: int = FIZZ_STORAGE_PER_GB_MONTH
    price_factor: float = 1.0
    profile_id: int | None = None
    node_names: itertools.count = field(default_factory=lambda: itertools.count(1))


def _evm_address(rng: random.Random) -> str:
    return f"0x{rng.getrandbits(160):040x}"


def _slugify(name: str) -> str:
    return "-".join(name.lower().split())


def _plan_companies(rng: random.Random, count: int, pick_region: _Weighted) -> list[_Owner]:
    companies = []
    for name in rng.sample(COMPANY_NAMES, count):
        regions: list[str] = []
        for _ in range(rng.choice((1, 2, 2, 3, 3, 4))):
            region = pick_region(rng)
            if region not in regions:
                regions.append(region)
        companies.append(
            _Owner(
                email=f"{COMPANY_EMAIL_PREFIX}{_slugify(name)}@{DEMO_DOMAIN}",
                display_name=name,
                regions=tuple(regions),
                is_verified=True,  # provider mode is for vetted datacenters
                payout_evm_address=_evm_address(rng),
                # List prices: CPU per core-month to the cent, RAM per GB-month to the tenth of a cent,
                # storage per GB-month to the hundredth of a cent.
                cpu_price=round(rng.uniform(0.5, 2.5) * 100) * 10_000,
                memory_price=round(rng.uniform(0.05, 0.30) * 1000) * 1000,
                storage_price=round(rng.uniform(0.005, 0.04) * 10_000) * 100,
                price_factor=rng.uniform(0.88, 1.15),
            )
        )
    return companies


def _operator(rng: random.Random, index: int, region: str) -> _Owner:
    adjective, animal = rng.choice(HANDLE_ADJECTIVES), rng.choice(HANDLE_ANIMALS)
    return _Owner(
        email=f"{adjective}-{animal}-{index}@{DEMO_DOMAIN}",
        display_name=f"{adjective}-{animal}-{index}",
        regions=(region,),
        is_verified=False,
        payout_evm_address=_evm_address(rng),
    )


# --- Nodes -----------------------------------------------------------------------------------
def _round_price(micros: float) -> int:
    """Prices as people set them: to the tenth of a cent under $1, to the cent above."""
    step = 10_000 if micros >= 1_000_000 else 1_000
    return max(step, int(round(micros / step)) * step)


def _gpu_price(rng: random.Random, market: _GpuMarket, mode: str, owner: _Owner) -> int:
    if mode == NodeMode.FIZZ:
        return market.fizz_price  # fixed by the protocol, per GPU model
    spread = market.price_high - market.price_low
    price = (market.price_low + spread * rng.betavariate(2.0, 2.5)) * owner.price_factor
    outlier = rng.random()
    if outlier < 0.015:
        price *= rng.uniform(0.45, 0.75)  # a fire sale
    elif outlier > 0.98:
        price *= rng.uniform(1.4, 2.0)  # listed and forgotten
    return _round_price(price)


def _uptimes(rng: random.Random, tier: int, status: str, in_maintenance: bool) -> tuple[float, float, float, float]:
    """(1 day, 7 days, 30 days, hours since last seen)."""
    if status == NodeStatus.PENDING:
        return 0.0, 0.0, 0.0, 0.0
    floor, ceiling = TIER_UPTIME_FLOOR[tier], TIER_UPTIME_CEILING[tier]
    if status == NodeStatus.OFFLINE:
        hours_offline = rng.uniform(0.5, 72.0)
        # Still in its tier (demotion takes several bad eras), near the bottom of the band.
        uptime_30d = floor + (ceiling - floor) * 0.3 * (1.0 - rng.random())
        uptime_7d = max(0.0, min(uptime_30d, 1.0 - hours_offline / 168) - rng.uniform(0.0, 0.05))
        uptime_1d = max(0.0, 1.0 - hours_offline / 24) * rng.uniform(0.6, 1.0)
        return round(uptime_1d, 4), round(uptime_7d, 4), max(round(uptime_30d, 4), floor + 0.0001), hours_offline
    uptime_30d = max(round(floor + (ceiling - floor) * (1.0 - rng.random()), 4), floor + 0.0001)
    uptime_7d = round(min(1.0, max(floor - 0.02, uptime_30d + rng.uniform(-0.02, 0.02))), 4)
    uptime_1d = 1.0 if rng.random() < 0.7 else round(rng.uniform(max(0.8, floor - 0.05), 1.0), 4)
    seconds_since_seen = rng.uniform(5, 600) if in_maintenance else rng.uniform(1, 60)
    return uptime_1d, uptime_7d, min(uptime_30d, 1.0), seconds_since_seen / 3600


def _build_node(
    rng: random.Random,
    *,
    now: datetime,
    owner: _Owner,
    name: str,
    model: GpuModel,
    mode: str,
    gpu_count: int,
    region: str,
    force_listed: bool = False,
) -> Node:
    market = GPU_MARKET[model.slug]
    hardware = market.hardware
    vram_gb = model.vram_gb
    if mode == NodeMode.FIZZ:
        if hardware == "apple":
            core_options, memory_options = APPLE_CONFIGS[model.slug]
            cpu_cores = rng.choice(core_options)
            memory_gb = vram_gb = rng.choice([gb for gb in memory_options if gb <= model.vram_gb])
        else:
            pick_cores, pick_memory = FIZZ_HARDWARE[hardware if hardware in FIZZ_HARDWARE else "datacenter"]
            cpu_cores, memory_gb = pick_cores(rng), pick_memory(rng)
        storage_gb, bandwidth_mbps = FIZZ_STORAGE(rng), FIZZ_BANDWIDTH(rng)
        cpu_price, memory_price = FIZZ_CPU_PER_CORE_MONTH, FIZZ_MEMORY_PER_GB_MONTH
        storage_price = FIZZ_STORAGE_PER_GB_MONTH
        tier = FIZZ_TIERS(rng)
    else:
        pick_cores, pick_memory, pick_storage = PROVIDER_HARDWARE[hardware]
        cpu_cores = max(8, pick_cores(rng) * gpu_count)
        memory_gb = max(32, pick_memory(rng) * gpu_count)
        storage_gb = pick_storage(rng) * gpu_count
        bandwidth_mbps = PROVIDER_BANDWIDTH[hardware](rng)
        # Each machine's resource prices within a few percent of its company's list price.
        cpu_price = int(owner.cpu_price * rng.uniform(0.95, 1.05))
        memory_price = int(owner.memory_price * rng.uniform(0.95, 1.05))
        storage_price = int(owner.storage_price * rng.uniform(0.95, 1.05))
        tier = PROVIDER_TIERS(rng)
    gpu_price = _gpu_price(rng, market, mode, owner)

    if force_listed:
        status, in_maintenance = NodeStatus.ONLINE, False
        tier = 4 if mode == NodeMode.FIZZ else 1
    else:
        # ~85% online, ~10% offline, ~3% online but in maintenance, ~2% waiting for a first heartbeat.
        roll = rng.random()
        in_maintenance = 0.95 <= roll < 0.98
        if roll < 0.85 or in_maintenance:
            status = NodeStatus.ONLINE
        elif roll < 0.95:
            status = NodeStatus.OFFLINE
        else:
            status = NodeStatus.PENDING
        if status == NodeStatus.PENDING:
            # A new node starts in the lowest tier of its mode (ours: provider mode is vetted).
            tier = 7 if mode == NodeMode.FIZZ else 3
    uptime_1d, uptime_7d, uptime_30d, hours_since_seen = _uptimes(rng, tier, status, in_maintenance)

    free_gpus = gpu_count
    if status == NodeStatus.ONLINE and not force_listed:
        roll = rng.random()
        if gpu_count == 1:
            free_gpus = 0 if roll < 0.2 else 1
        elif roll < 0.13:
            free_gpus = 0
        elif roll < 0.35:
            free_gpus = rng.randint(1, gpu_count - 1)
    rented_share = (gpu_count - free_gpus) / gpu_count

    return Node(
        provider_id=owner.profile_id,
        name=name,
        mode=mode,
        region_id=region,
        gpu_model_id=model.slug,
        gpu_count=gpu_count,
        vram_gb=vram_gb,
        gpu_tier=model.gpu_tier,
        cpu_cores=cpu_cores,
        memory_gb=memory_gb,
        storage_gb=storage_gb,
        bandwidth_mbps=bandwidth_mbps,
        gpu_price_per_hour_micros=gpu_price,
        cpu_price_per_core_month_micros=cpu_price,
        memory_price_per_gb_month_micros=memory_price,
        storage_price_per_gb_month_micros=storage_price,
        price_per_hour_micros=node_price_per_hour_micros(
            gpu_count=gpu_count,
            gpu_price_per_hour_micros=gpu_price,
            cpu_cores=cpu_cores,
            cpu_price_per_core_month_micros=cpu_price,
            memory_gb=memory_gb,
            memory_price_per_gb_month_micros=memory_price,
            storage_gb=storage_gb,
            storage_price_per_gb_month_micros=storage_price,
        ),
        status=status,
        in_maintenance=in_maintenance,
        last_seen_at=None if status == NodeStatus.PENDING else now - timedelta(hours=hours_since_seen),
        uptime_1d=uptime_1d,
        uptime_7d=uptime_7d,
        uptime_30d=uptime_30d,
        trust_tier=tier,
        # Demo nodes have no agent: liveness does not time them out, and their providers' stake
        # is assumed to cover them.
        is_simulated=True,
        stake_covered=True,
        available_gpus=free_gpus,
        available_cpu_cores=cpu_cores - math.ceil(cpu_cores * rented_share),
        available_memory_gb=memory_gb - math.ceil(memory_gb * rented_share),
        available_storage_gb=storage_gb - math.ceil(storage_gb * rented_share),
    )


def _fizz_host(rng: random.Random, model: GpuModel) -> str:
    return rng.choice(APPLE_HOSTS if model.kind == GpuModel.Kind.APPLE else PC_HOSTS)


def _plan_market(
    rng: random.Random, *, nodes: int, demo_provider: _Owner
) -> tuple[list[_Owner], list[_Owner], list[tuple[_Owner, dict]]]:
    """Companies, community operators, and each node's owner with its build arguments."""
    models = {model.slug: model for model in GpuModel.objects.filter(slug__in=GPU_MARKET)}
    region_codes = set(Region.objects.values_list("code", flat=True))
    region_weights = {code: weight for code, weight in REGION_WEIGHTS.items() if code in region_codes}
    pick_region = _Weighted(list(region_weights), list(region_weights.values()))
    slugs = [slug for slug in GPU_MARKET if slug in models]
    pick_model = _Weighted(slugs, [GPU_MARKET[slug].weight for slug in slugs])

    plan: list[tuple[_Owner, dict]] = []
    for name, slug, mode, gpu_count, region in DEMO_PROVIDER_NODES[: min(nodes, len(DEMO_PROVIDER_NODES))]:
        plan.append(
            (demo_provider, {"name": name, "model": models[slug], "mode": mode, "gpu_count": gpu_count,
                             "region": region, "force_listed": True})
        )  # fmt: skip

    fizz_models: list[GpuModel] = []
    provider_models: list[GpuModel] = []
    for _ in range(nodes - len(plan)):
        model = models[pick_model(rng)]
        is_provider = rng.random() < GPU_MARKET[model.slug].provider_share
        (provider_models if is_provider else fizz_models).append(model)

    company_count = min(len(COMPANY_NAMES), math.ceil(len(provider_models) / NODES_PER_COMPANY))
    companies = _plan_companies(rng, company_count, pick_region)
    if companies:
        # A few large clouds and a long tail of small ones.
        pick_company = _Weighted(companies, [min(rng.paretovariate(1.5), 12.0) for _ in companies])
        company_regions = {
            company.email: _Weighted(company.regions, [REGION_WEIGHTS[code] for code in company.regions])
            for company in companies
        }
        for position, model in enumerate(provider_models):
            # Every company owns at least one node; the rest go mostly to the big ones.
            company = companies[position] if position < len(companies) else pick_company(rng)
            gpu_count = PROVIDER_GPU_COUNTS[GPU_MARKET[model.slug].hardware](rng)
            region = company_regions[company.email](rng)
            name = f"{region}-{model.slug}x{gpu_count}-{next(company.node_names):05d}"
            plan.append((company, {"name": name, "model": model, "mode": NodeMode.PROVIDER,
                                   "gpu_count": gpu_count, "region": region}))  # fmt: skip

    operators: list[_Owner] = []
    position = 0
    while position < len(fizz_models):
        operator = _operator(rng, len(operators) + 1, pick_region(rng))
        operators.append(operator)
        owned = fizz_models[position : position + OPERATOR_NODE_COUNTS(rng)]
        position += len(owned)
        for model in owned:
            name = f"{_fizz_host(rng, model)}-{next(operator.node_names)}"
            plan.append((operator, {"name": name, "model": model, "mode": NodeMode.FIZZ, "gpu_count": 1,
                                    "region": operator.regions[0]}))  # fmt: skip
    return companies, operators, plan


# --- Recognising and removing demo data ------------------------------------------------------
def _demo_users_q(prefix: str = "") -> Q:
    return Q(**{f"{prefix}email__endswith": f"@{DEMO_DOMAIN}"})


def demo_nodes_q(prefix: str = "") -> Q:
    """Nodes this module created: owned by a demo-domain user, or the Demo Provider's fixed set
    (`prefix` reaches them from another model: "node__")."""
    return _demo_users_q(f"{prefix}provider__user__") | Q(
        **{f"{prefix}provider__user__email": PROVIDER_EMAIL, f"{prefix}name__in": DEMO_PROVIDER_NODE_NAMES}
    )


def _already_seeded(*, nodes: int, seed: int) -> bool:
    if not DemoMarket.objects.filter(seed=seed, nodes=nodes, generator_version=GENERATOR_VERSION).exists():
        return False
    verified = EmailAddress.objects.filter(
        email__in=[login.email for login in DEMO_LOGINS], verified=True, primary=True
    ).count()
    return verified == len(DEMO_LOGINS) and Node.objects.filter(demo_nodes_q()).count() == nodes


def _why_keep_the_market() -> str:
    """Why the demo market in the database must stay although another was asked for ("" when it
    may go): a lease on a demo node is rental history (the renter's deployment, its charges and
    the provider's earnings point at it), which replacing the market would have to delete."""
    leases = Lease.objects.filter(node__in=Node.objects.filter(demo_nodes_q()))
    count = leases.count()
    if not count:
        return ""
    kept = DemoMarket.objects.order_by("-created_at").first()
    what = (
        f"the demo market in this database ({kept.nodes:,} nodes, seed {kept.seed}, "
        f"generator v{kept.generator_version})"
        if kept
        else "the demo nodes in this database"
    )
    return (
        f"{what} has rental history ({count} lease{'s' if count != 1 else ''} on its nodes), so it was kept "
        "as it is. For the market asked for, start from an empty database: stop the server, delete "
        "var/spheron.sqlite3 (or point DATABASE_URL at a new database) and run it again."
    )


def _delete_demo_market() -> int:
    """Deletes demo nodes, then their profiles and users (PROTECT foreign keys); returns the nodes deleted."""
    DemoMarket.objects.all().delete()
    # A reward protects its node (rewards are history): the demo nodes' eras go first, then each era
    # they were rewarded in runs again without them, which deletes their rewards and takes back any
    # floor top-up in the ledger (providers.era_rewards), as for any deleted node.
    rewarded = sorted(set(NodeReward.objects.filter(demo_nodes_q("node__")).values_list("era__started_at", flat=True)))
    NodeEra.objects.filter(demo_nodes_q("node__")).delete()
    for era_start in rewarded:
        era_rewards_run(era_start=era_start)
    _total, deleted_by_model = Node.objects.filter(demo_nodes_q()).delete()  # the total counts their outages too
    deleted = deleted_by_model.get(Node._meta.label, 0)
    StakeEvent.objects.filter(_demo_users_q("provider__user__")).delete()
    ProviderProfile.objects.filter(_demo_users_q("user__")).delete()
    User.objects.filter(_demo_users_q()).delete()
    return deleted


# --- Demo logins -----------------------------------------------------------------------------
def _ensure_logins() -> ProviderProfile:
    """The three demo logins with a verified primary address; returns the Demo Provider's profile."""
    password = make_password(DEMO_PASSWORD)  # hashed once, for all three
    flags = {
        DEVELOPER_EMAIL: {"name": "Demo Developer", "is_developer": True, "is_provider": False},
        PROVIDER_EMAIL: {"name": "Demo Provider", "is_developer": True, "is_provider": True},
        ADMIN_EMAIL: {"name": "Demo Admin", "is_developer": True, "is_staff": True, "is_superuser": True},
    }
    users = {}
    for login in DEMO_LOGINS:
        user, _ = User.objects.update_or_create(
            email=login.email, defaults={"password": password, "is_active": True, **flags[login.email]}
        )
        EmailAddress.objects.filter(user=user).exclude(email=login.email).update(primary=False)
        EmailAddress.objects.update_or_create(
            user=user, email=login.email, defaults={"verified": True, "primary": True}
        )
        users[login.email] = user
    profile, _ = ProviderProfile.objects.get_or_create(
        user=users[PROVIDER_EMAIL],
        defaults={
            "display_name": "Demo Provider",
            "default_region_id": "us-east",
            "is_verified": True,
        },
    )
    return profile


def _provider_stake(profile: ProviderProfile) -> None:
    """The demo provider's stake, recorded once through the stake service, so that the stake page's
    history shows where it came from. (Databases seeded before this set the balance without a
    history: it is recorded again from zero.)"""
    if StakeEvent.objects.filter(provider=profile).exists():
        return
    ProviderProfile.objects.filter(id=profile.id).update(staked_spon=0)
    stake_record(
        provider=profile,
        kind=StakeEventKind.STAKE,
        amount=DEMO_PROVIDER_STAKE_SPON,
        reason="Demo stake (seed_demo)",
        by=User.objects.get(email=ADMIN_EMAIL),
    )


def _market_stakes(
    companies: list[_Owner], operators: list[_Owner], plan: list[tuple[_Owner, dict]], *, seed: int
) -> dict[str, Decimal]:
    """Every other demo provider's stake in $SPON base units, by e-mail: a few times the minimum its
    planned GPUs need (the matchmaker's stake factor then reads as it would in a real market)."""
    rng = random.Random(f"demo-stakes:{seed}")
    gpus: dict[str, int] = {}
    for owner, arguments in plan:
        gpus[owner.email] = gpus.get(owner.email, 0) + max(arguments["gpu_count"], 1)
    per_gpu = Decimal(settings.MIN_STAKE_PER_GPU_SPON)
    stakes = {}
    for owners, (low, high) in ((companies, COMPANY_STAKE_COVER), (operators, OPERATOR_STAKE_COVER)):
        for owner in owners:
            cover = Decimal(str(round(rng.uniform(low, high), 2)))
            spon = (per_gpu * gpus.get(owner.email, 1) * cover).quantize(Decimal(1), rounding=ROUND_CEILING)
            stakes[owner.email] = spon * 10**SPON_DECIMALS
    return stakes


def _developer_credit() -> None:
    """$100 of credits for the demo developer, granted by the demo admin, once (idempotency key):
    without them, a server with no Stripe keys could not show a deployment."""
    developer = User.objects.get(email=DEVELOPER_EMAIL)
    adjustment_post(
        user=developer,
        amount=DEVELOPER_CREDIT_MICROS,
        memo="Demo credits (seed_demo)",
        created_by=User.objects.get(email=ADMIN_EMAIL),
        idempotency_key=f"demo-credit:{developer.id}",
    )


def _provider_earnings() -> None:
    """$250 of settled earnings for the demo provider, granted by the demo admin as an adjustment
    (memo says so), once: real earnings settle only 72 hours after rental income, so without them
    a new user could not try a payout (on the devnet it is paid within seconds)."""
    provider = User.objects.get(email=PROVIDER_EMAIL)
    transaction_post(
        kind=TransactionKind.ADJUSTMENT,
        reference_type="user",
        reference_id=str(provider.id),
        lines=[
            (account_get(kind=AccountKind.PROVIDER_SETTLED, user=provider), PROVIDER_EARNINGS_MICROS),
            (account_get(kind=AccountKind.CLEARING_ADJUSTMENTS), -PROVIDER_EARNINGS_MICROS),
        ],
        idempotency_key=f"demo-earnings:{provider.id}",
        memo="Demo settled earnings (seed_demo), so a payout can be tried",
        created_by=User.objects.get(email=ADMIN_EMAIL),
    )


def _provider_prices(profile: ProviderProfile, owner: _Owner) -> None:
    """The demo provider's price list (the prices page): its CPU, memory and storage list prices,
    which its provider-mode demo machines are priced within a few percent of, and the GPU price of
    each model those machines have."""
    nodes = Node.objects.filter(provider=profile, mode=NodeMode.PROVIDER).order_by("id")
    usd = lambda micros: str(Decimal(micros) / 1_000_000)  # noqa: E731
    provider_prices_update(
        provider=profile,
        gpu_prices={
            model: usd(price) for model, price in nodes.values_list("gpu_model_id", "gpu_price_per_hour_micros")
        },
        cpu_per_core_month=usd(owner.cpu_price),
        memory_per_gb_month=usd(owner.memory_price),
        storage_per_gb_month=usd(owner.storage_price),
    )


# --- The Demo Provider's era rewards -----------------------------------------------------------
def _challenge_expected(node: Node) -> dict:
    """What a liveness challenge to the node asks for (providers.liveness.challenge_issue's terms)."""
    has_gpu = node.gpu_model.kind == GpuModel.Kind.GPU
    return {
        "agent_version": settings.NODE_MIN_AGENT_VERSION,
        "cpu_cores": node.cpu_cores,
        "memory_gb": node.memory_gb,
        "memory_free_gb": node.available_memory_gb,
        "storage_free_gb": node.available_storage_gb,
        "gpu_kind": node.gpu_model.kind,
        "gpu_model": node.gpu_model_id,
        "gpu_count": node.gpu_count if has_gpu else 0,
        "gpus_free": node.available_gpus if has_gpu else 0,
        "vram_gb": node.vram_gb,
    }


def _challenge_measured(node: Node, *, memory_free_gb: int) -> dict:
    """An agent's answer: the node's hardware as registered, with `memory_free_gb` of memory free."""
    gpus = []
    if node.gpu_model.kind == GpuModel.Kind.GPU:
        vram_mib = node.vram_gb * 1024
        gpus = [
            {"name": f"{node.gpu_model.vendor} {node.gpu_model.name}", "memory_total_mib": vram_mib,
             "memory_free_mib": vram_mib - 512}
            for _ in range(node.gpu_count)
        ]  # fmt: skip
    return {
        "agent_version": settings.NODE_MIN_AGENT_VERSION,
        "cpu_cores": node.cpu_cores,
        "memory_gb": node.memory_gb,
        "memory_available_gb": memory_free_gb,
        "storage_free_gb": node.available_storage_gb,
        "gpus": gpus,
    }


def _era_history(node: Node, start: datetime, eras_ago: int, outages: list, challenges: list, events: list) -> None:
    """One era of one demo node as the agent and liveness would have left it: its scripted outages,
    its liveness challenges (a failed one with its penalty outage and event, as
    providers.liveness.challenge_answer records them)."""
    key = (node.name, eras_ago)
    if key in DEMO_OFFLINE:
        hour, minutes = DEMO_OFFLINE[key]
        began = start + timedelta(hours=hour)
        outages.append(NodeOutage(node=node, kind=OutageKind.OFFLINE, started_at=began,
                                  ended_at=began + timedelta(minutes=minutes), reason="no heartbeat"))  # fmt: skip
        events.append(NodeEvent(node=node, kind=NodeEventKind.OFFLINE, at=began, message="no heartbeat"))
        events.append(
            NodeEvent(node=node, kind=NodeEventKind.ONLINE, at=began + timedelta(minutes=minutes),
                      message="heartbeats resumed; rewards after the 3-hour cool-down")
        )  # fmt: skip
    if key in DEMO_MAINTENANCE:
        hour, minutes = DEMO_MAINTENANCE[key]
        began = start + timedelta(hours=hour)
        outages.append(NodeOutage(node=node, kind=OutageKind.MAINTENANCE, started_at=began,
                                  ended_at=began + timedelta(minutes=minutes), reason="maintenance"))  # fmt: skip
        events.append(NodeEvent(node=node, kind=NodeEventKind.MAINTENANCE_ON, at=began))
        events.append(NodeEvent(node=node, kind=NodeEventKind.MAINTENANCE_OFF, at=began + timedelta(minutes=minutes)))
    expected = _challenge_expected(node)
    for hour in DEMO_CHALLENGE_HOURS:
        issued = start + timedelta(hours=hour, minutes=7 * (node.id % 8))
        if any(s <= issued < e for s, e in _outage_spans(outages, node)):
            continue  # no challenge while the node is away
        failing = DEMO_FAILED_CHALLENGE.get(key) == hour
        measured = _challenge_measured(
            node, memory_free_gb=max(1, expected["memory_free_gb"] * 3 // 10) if failing else expected["memory_free_gb"]
        )
        failures, _review = challenge_evaluate(expected, measured)
        answered = issued + timedelta(seconds=3)
        challenges.append(
            NodeChallenge(
                public_id=secrets.token_hex(16), node=node, nonce=secrets.token_urlsafe(24), issued_at=issued,
                expires_at=issued + timedelta(seconds=settings.NODE_CHALLENGE_TTL_SECONDS),
                status=ChallengeStatus.FAILED if failures else ChallengeStatus.PASSED, answered_at=answered,
                expected=expected, measured=measured, failure_reason="; ".join(failures)[:2000],
            )
        )  # fmt: skip
        if failures:
            reason = f"challenge {ChallengeStatus.FAILED}: {failures[0]}"
            penalty = timedelta(seconds=settings.NODE_CHALLENGE_PENALTY_SECONDS)
            if penalty:
                outages.append(NodeOutage(node=node, kind=OutageKind.CHALLENGE, started_at=answered - penalty,
                                          ended_at=answered, reason=reason[:200]))  # fmt: skip
            events.append(NodeEvent(node=node, kind=NodeEventKind.CHALLENGE, at=answered, message=reason[:300]))


def _outage_spans(outages: list[NodeOutage], node: Node) -> list[tuple[datetime, datetime]]:
    return [(o.started_at, o.ended_at) for o in outages if o.node is node]


def _provider_rewards() -> None:
    """The Demo Provider's own nodes get the last DEMO_REWARD_ERAS closed eras (24 h from 00:00 UTC),
    with the outages and liveness challenges behind them (DEMO_OFFLINE, DEMO_MAINTENANCE,
    DEMO_FAILED_CHALLENGE), and each era's rewards computed by providers.era_rewards, oldest first, so
    its node pages, earnings and rewards are not empty. Only what is missing is added: an era one of
    its nodes has no NodeEra for, an era one of its nodes has no reward in; a second run does nothing.

    An era in which other nodes were rewarded already is left alone: running it again would share its
    emission anew and change their rewards. The market's other demo nodes get no eras (their uptime
    is drawn, not measured), so in a demo database these nodes share each era's emission."""
    now = clock.now()
    nodes = list(
        Node.objects.filter(provider__user__email=PROVIDER_EMAIL, name__in=DEMO_PROVIDER_NODE_NAMES)
        .select_related("gpu_model")
        .order_by("id")
    )
    if not nodes:
        return
    node_ids = [node.id for node in nodes]
    latest_end = last_era_end(now)
    starts = [latest_end - ERA * eras_ago for eras_ago in range(DEMO_REWARD_ERAS, 0, -1)]  # oldest first
    taken = set(
        NodeReward.objects.filter(era__started_at__in=starts)
        .exclude(node_id__in=node_ids)
        .values_list("era__started_at", flat=True)
    )
    starts = [start for start in starts if start not in taken]
    have_era = set(
        NodeEra.objects.filter(node_id__in=node_ids, started_at__in=starts).values_list("node_id", "started_at")
    )
    have_reward = set(
        NodeReward.objects.filter(node_id__in=node_ids, era__started_at__in=starts).values_list(
            "node_id", "era__started_at"
        )
    )
    missing = [(node, start) for node in nodes for start in starts if (node.id, start) not in have_era]
    if missing:
        _provider_eras(nodes, missing, latest_end=latest_end, now=now)
    due = sorted({start for node in nodes for start in starts if (node.id, start) not in have_reward})
    if not due:
        return
    if not Rate.objects.filter(symbol=SPON_SYMBOL).exists():
        # Without a $SPON rate the rewards have no USD value and no floor is paid (providers.era_rewards).
        Rate.objects.create(symbol=SPON_SYMBOL, usd_per_unit=DEMO_SPON_USD, at=now, source=DEMO_RATE_SOURCE)
    for start in due:
        era_rewards_run(era_start=start, now=now)


def _provider_eras(
    nodes: list[Node], missing: list[tuple[Node, datetime]], *, latest_end: datetime, now: datetime
) -> None:
    """The NodeEra rows of `missing` (node, era start), with their outages and challenges."""
    # A node's eras count from its birth (registered_at, else created_at): the demo machines have run
    # for a month, as their 30-day uptime says.
    born = latest_end - timedelta(days=DEMO_NODE_BORN_DAYS)
    Node.objects.filter(id__in=[node.id for node in nodes], created_at__gt=born).update(created_at=born)
    outages: list[NodeOutage] = []
    challenges: list[NodeChallenge] = []
    events: list[NodeEvent] = []
    for node, start in missing:
        _era_history(node, start, (latest_end - start) // ERA, outages, challenges, events)
    NodeOutage.objects.bulk_create(outages)
    NodeChallenge.objects.bulk_create(challenges)
    NodeEvent.objects.bulk_create(events)

    first = min(start for _node, start in missing)
    by_node: dict[int, list] = {}
    for node_id, kind, started_at, ended_at in (
        NodeOutage.objects.filter(node_id__in=[node.id for node in nodes], started_at__lt=latest_end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=first))
        .values_list("node_id", "kind", "started_at", "ended_at")
    ):
        by_node.setdefault(node_id, []).append((kind, started_at, ended_at))
    eras = []
    streaks: dict[int, tuple[int, int]] = {}
    for node, start in sorted(missing, key=lambda pair: (pair[0].id, pair[1])):
        uptime, excused = uptime_between(by_node.get(node.id, []), max(start, born), start + ERA, now)
        good, bad = streaks.get(node.id, (0, 0))
        if excused > 0.5:
            outcome = EraOutcome.MAINTENANCE
        else:
            outcome = era_outcome(node.trust_tier, uptime)
            good, bad = (
                (good + 1, 0) if outcome == EraOutcome.GOOD else (0, bad + 1) if outcome == EraOutcome.BAD else (0, 0)
            )
        streaks[node.id] = (good, bad)
        eras.append(
            NodeEra(node=node, started_at=start, ended_at=start + ERA, uptime=round(uptime, 6), outcome=outcome,
                    tier_before=node.trust_tier, tier_after=node.trust_tier, good_streak=good, bad_streak=bad)
        )  # fmt: skip
    NodeEra.objects.bulk_create(eras)


# --- The service -----------------------------------------------------------------------------
def demo_seed(*, nodes: int, seed: int, stdout: _Writer | None = None) -> DemoSeedResult:
    """Fill the database with a demo market of `nodes` nodes drawn from `seed` (idempotent)."""
    if not 0 <= nodes <= MAX_DEMO_NODES:
        raise ValueError(f"nodes must be between 0 and {MAX_DEMO_NODES:,}; got {nodes}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}; got {seed}")
    started = time.perf_counter()

    def say(message: str) -> None:
        if stdout is not None:
            stdout.write(message + "\n")

    with transaction.atomic():
        seeded = _already_seeded(nodes=nodes, seed=seed)
        kept_because = "" if seeded else _why_keep_the_market()
        if seeded or kept_because:
            _developer_credit()  # a database seeded before the demo credits existed gets them too
            _provider_earnings()
            _provider_stake(ProviderProfile.objects.get(user__email=PROVIDER_EMAIL))  # and the stake's history
            _provider_rewards()  # and its nodes' era rewards
            demo_profiles = ProviderProfile.objects.filter(_demo_users_q("user__"))
            kept = DemoMarket.objects.order_by("-created_at").first() if kept_because else None
            return DemoSeedResult(
                nodes=kept.nodes if kept else nodes,
                seed=kept.seed if kept else seed,
                created=False,
                datacenter_providers=demo_profiles.filter(user__email__startswith=COMPANY_EMAIL_PREFIX).count(),
                community_operators=demo_profiles.exclude(user__email__startswith=COMPANY_EMAIL_PREFIX).count(),
                logins=DEMO_LOGINS,
                seconds=time.perf_counter() - started,
                kept_because=kept_because,
            )

        if removed := _delete_demo_market():
            say(f"Removed the previous demo market: {removed} nodes ({time.perf_counter() - started:.1f} s).")
        demo_profile = _ensure_logins()
        _developer_credit()
        _provider_earnings()
        _provider_stake(demo_profile)

        rng = random.Random(seed)
        now = timezone.now()
        demo_provider = _Owner(
            email=PROVIDER_EMAIL, display_name=demo_profile.display_name, regions=("us-east",), is_verified=True,
            payout_evm_address="", cpu_price=1_000_000, memory_price=120_000, storage_price=15_000,
            profile_id=demo_profile.id,
        )  # fmt: skip
        companies, operators, plan = _plan_market(rng, nodes=nodes, demo_provider=demo_provider)
        owners = companies + operators
        stakes = _market_stakes(companies, operators, plan, seed=seed)

        unusable_password = make_password(None)
        DemoMarket.objects.create(seed=seed, nodes=nodes, generator_version=GENERATOR_VERSION)
        users = User.objects.bulk_create(
            [
                User(email=owner.email, name=owner.display_name, password=unusable_password, is_developer=False,
                     is_provider=True, date_joined=now)
                for owner in owners
            ],
            batch_size=BATCH_SIZE,
        )  # fmt: skip
        profiles = ProviderProfile.objects.bulk_create(
            [
                ProviderProfile(
                    user_id=user.id,
                    display_name=owner.display_name,
                    default_region_id=owner.regions[0],
                    payout_evm_address=owner.payout_evm_address,
                    is_verified=owner.is_verified,
                    staked_spon=stakes[owner.email],
                )
                for owner, user in zip(owners, users, strict=True)
            ],
            batch_size=BATCH_SIZE,
        )
        StakeEvent.objects.bulk_create(
            [
                StakeEvent(
                    provider_id=profile.id,
                    kind=StakeEventKind.STAKE,
                    amount=profile.staked_spon,
                    balance_after=profile.staked_spon,
                    reason="Demo stake (seed_demo)",
                    created_at=now,
                )  # fmt: skip
                for profile in profiles
            ],
            batch_size=BATCH_SIZE,
        )
        for owner, profile in zip(owners, profiles, strict=True):
            owner.profile_id = profile.id
        say(f"Created {len(companies)} datacenter providers and {len(operators)} community operators.")

        Node.objects.bulk_create(
            (_build_node(rng, now=now, owner=owner, **arguments) for owner, arguments in plan),
            batch_size=BATCH_SIZE,
        )
        _provider_prices(demo_profile, demo_provider)
        _provider_rewards()
        # Fresh planner statistics: after a bulk load SQLite has none (and never gathers them by
        # itself), and without them it sorts every listed node instead of using the catalog indexes.
        with connection.cursor() as cursor:
            for model in (Node, ProviderProfile):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        seconds = time.perf_counter() - started
        say(f"Created {len(plan)} demo nodes (seed {seed}) in {seconds:.1f} s.")
    return DemoSeedResult(
        nodes=nodes,
        seed=seed,
        created=True,
        datacenter_providers=len(companies),
        community_operators=len(operators),
        logins=DEMO_LOGINS,
        seconds=seconds,
    )
