"""Era rewards: the parameters in one place, the receipts of an era, and the earnings calculator.

Pure functions over plain inputs: the era close (providers.uptime.close_eras) will read NodeEra,
the outages, the challenges and the leases into `NodeEraInputs` and call `era_receipts`. Every
figure goes through spheron_sdk.rewards (the formula, the truncations, the $SPON split), the
module a provider runs on the receipt: one code path, so a receipt and its figure cannot disagree.

Settings read by `params_from_settings` (each with the default below when absent):

    REWARD_K_PER_GPU = 500                 points per GPU at tier multiplier 1 (protocol-facts)
    REWARD_K_PER_CPU_CORE = 25             points per CPU core at CPU tier multiplier 1
    REWARD_UPTIME_THRESHOLD = "0.5"        era uptime at or above which the uptime factor is 1
    REWARD_WEIGHTS_GPU = {"cpu": "0.2", "ram": "0.1", "storage": "0.1", "gpu": "0.6"}
    REWARD_WEIGHTS_CPU = {"cpu": "0.5", "ram": "0.25", "storage": "0.25"}
    REWARD_TRUST_MULTIPLIERS = {1: "2.0", 2: "1.7", 3: "1.5", 4: "1.2", 5: "1.1", 6: "1.0", 7: "0"}
    REWARD_UTILIZATION_BONUS = "0.5"       ours: a node leased all its online time earns 1.5×
    REWARD_ERA_EMISSION_SPON = "100000"    ours: whole $SPON issued per era, shared pro rata
    PLATFORM_FEE_FIZZ (exists: 0.07)       the calculator's rental income is net of it

The GPU/CPU tier multipliers are reference data, not settings: providers.models.GPU_TIER_MULTIPLIERS
(the Node's `gpu_tier` is looked up there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any

import orjson
from django.conf import settings
from spheron_sdk import rewards as sdk

from core.money import HOURS_PER_MONTH
from providers.hardware import gpu_model_slug
from providers.models import GPU_TIER_MULTIPLIERS, SPON_DECIMALS
from providers.pricing import (
    FIZZ_CPU_PER_CORE_MONTH,
    FIZZ_MEMORY_PER_GB_MONTH,
    FIZZ_STORAGE_PER_GB_MONTH,
    fizz_gpu_price_per_hour_micros,
    node_price_per_hour_micros,
)

_ONE, _ZERO = Decimal(1), Decimal(0)
ERA = timedelta(hours=24)


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


def _decimals(mapping: Mapping[Any, Any]) -> dict[Any, Decimal]:
    return {key: Decimal(str(value)) for key, value in mapping.items()}


DEFAULT_WEIGHTS_GPU = {"cpu": Decimal("0.2"), "ram": Decimal("0.1"), "storage": Decimal("0.1"), "gpu": Decimal("0.6")}
DEFAULT_WEIGHTS_CPU = {"cpu": Decimal("0.5"), "ram": Decimal("0.25"), "storage": Decimal("0.25"), "gpu": _ZERO}
DEFAULT_TRUST_MULTIPLIERS = {
    1: Decimal("2.0"),
    2: Decimal("1.7"),
    3: Decimal("1.5"),
    4: Decimal("1.2"),
    5: Decimal("1.1"),
    6: Decimal("1.0"),
    7: _ZERO,
}


@dataclass(frozen=True)
class RewardParams:
    """Every parameter of the era reward (protocol-facts.md; "ours" where the protocol left it open)."""

    k_per_gpu: Decimal = Decimal(500)
    k_per_cpu_core: Decimal = Decimal(25)
    uptime_threshold: Decimal = Decimal("0.5")
    weights_gpu: Mapping[str, Decimal] = field(default_factory=lambda: _frozen(DEFAULT_WEIGHTS_GPU))
    weights_cpu: Mapping[str, Decimal] = field(default_factory=lambda: _frozen(DEFAULT_WEIGHTS_CPU))
    trust_multipliers: Mapping[int, Decimal] = field(default_factory=lambda: _frozen(DEFAULT_TRUST_MULTIPLIERS))
    utilization_bonus: Decimal = Decimal("0.5")  # ours
    era_emission_spon: Decimal = Decimal(100_000)  # ours, whole $SPON per era
    tier_multipliers: Mapping[str, Decimal] = field(default_factory=lambda: _frozen(GPU_TIER_MULTIPLIERS))
    platform_fee_fizz: Decimal = Decimal("0.07")  # the calculator's rental income is net of it

    def __post_init__(self) -> None:
        for name in ("weights_gpu", "weights_cpu"):
            weights = {resource: Decimal(0) for resource in sdk.RESOURCES} | _decimals(getattr(self, name))
            if set(weights) != set(sdk.RESOURCES) or sum(weights.values()) != 1 or min(weights.values()) < 0:
                raise ValueError(f"{name}: non-negative weights of {', '.join(sdk.RESOURCES)} summing to 1")
            object.__setattr__(self, name, _frozen(weights))
        if self.weights_cpu["gpu"] != 0:
            raise ValueError("weights_cpu: a node without a GPU has no GPU weight")
        trust = {int(tier): Decimal(str(value)) for tier, value in self.trust_multipliers.items()}
        if set(trust) != set(range(1, 8)) or min(trust.values()) < 0:
            raise ValueError("trust_multipliers: a non-negative multiplier for each tier 1–7")
        object.__setattr__(self, "trust_multipliers", _frozen(trust))
        object.__setattr__(self, "tier_multipliers", _frozen(_decimals(self.tier_multipliers)))
        for name in ("k_per_gpu", "k_per_cpu_core", "uptime_threshold", "utilization_bonus", "era_emission_spon"):
            value = Decimal(str(getattr(self, name)))
            if not value.is_finite() or value < 0:
                raise ValueError(f"{name}: a non-negative number")
            object.__setattr__(self, name, value)
        if self.uptime_threshold > 1 or self.uptime_threshold != self.uptime_threshold.quantize(sdk.QUANTUM):
            raise ValueError(f"uptime_threshold: a fraction with at most {sdk.PLACES} decimals")
        if self.era_emission_spon.scaleb(SPON_DECIMALS) != self.era_emission_spon.scaleb(SPON_DECIMALS).to_integral():
            raise ValueError(f"era_emission_spon: at most {SPON_DECIMALS} decimals")
        if not 0 <= Decimal(str(self.platform_fee_fizz)) <= 1:
            raise ValueError("platform_fee_fizz: a fraction")

    @property
    def era_emission_base_units(self) -> int:
        return int(self.era_emission_spon.scaleb(SPON_DECIMALS))

    def weights(self, *, has_gpu: bool) -> Mapping[str, Decimal]:
        return self.weights_gpu if has_gpu else self.weights_cpu

    def k(self, unit_kind: str) -> Decimal:
        return self.k_per_gpu if unit_kind == "gpu" else self.k_per_cpu_core


SETTINGS_NAMES = (
    "REWARD_K_PER_GPU",
    "REWARD_K_PER_CPU_CORE",
    "REWARD_UPTIME_THRESHOLD",
    "REWARD_WEIGHTS_GPU",
    "REWARD_WEIGHTS_CPU",
    "REWARD_TRUST_MULTIPLIERS",
    "REWARD_UTILIZATION_BONUS",
    "REWARD_ERA_EMISSION_SPON",
    "PLATFORM_FEE_FIZZ",
)


def params_from_settings() -> RewardParams:
    """RewardParams from settings (the names in SETTINGS_NAMES), defaults where a setting is absent."""
    default = RewardParams()
    return RewardParams(
        k_per_gpu=getattr(settings, "REWARD_K_PER_GPU", default.k_per_gpu),
        k_per_cpu_core=getattr(settings, "REWARD_K_PER_CPU_CORE", default.k_per_cpu_core),
        uptime_threshold=getattr(settings, "REWARD_UPTIME_THRESHOLD", default.uptime_threshold),
        weights_gpu=_decimals(getattr(settings, "REWARD_WEIGHTS_GPU", default.weights_gpu)),
        weights_cpu=_decimals(getattr(settings, "REWARD_WEIGHTS_CPU", default.weights_cpu)),
        trust_multipliers=getattr(settings, "REWARD_TRUST_MULTIPLIERS", default.trust_multipliers),
        utilization_bonus=getattr(settings, "REWARD_UTILIZATION_BONUS", default.utilization_bonus),
        era_emission_spon=getattr(settings, "REWARD_ERA_EMISSION_SPON", default.era_emission_spon),
        platform_fee_fizz=getattr(settings, "PLATFORM_FEE_FIZZ", default.platform_fee_fizz),
    )


# --- Inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChallengeInput:
    """One liveness challenge of the era and its shortfall per resource (cpu, ram, storage, gpu)
    in [0, 1]; `challenge_shortfall` derives it from a NodeChallenge's status, expected and measured."""

    id: str
    at: datetime
    status: str
    shortfall: Mapping[str, Decimal]


@dataclass(frozen=True)
class LeaseSpan:
    """A lease's time on the node within the era (end: the era's end while it runs) and its units
    (GPUs, or CPU cores on a CPU node)."""

    id: int | str
    start: datetime
    end: datetime
    units: int


@dataclass(frozen=True)
class NodeEraInputs:
    """What one node's era reward is computed from.

    window: the era, from the node's registration if that is later. outages: counted downtime
    (offline periods and challenge penalties, open ones ended at the window's end); excused:
    maintenance. challenges: the era's challenges (ones with no shortfall count as passed);
    challenges_passed: more passed challenges not listed (the era close counts them in SQL).
    unit_kind "gpu": unit_count GPUs of GPU tier `tier`; "cpu": unit_count cores of CPU tier `tier`.
    trust_tier: the tier the node held during the era (NodeEra.tier_before)."""

    node_id: int
    window: tuple[datetime, datetime]
    unit_kind: str
    unit_count: int
    tier: str
    trust_tier: int
    outages: Sequence[tuple[datetime, datetime]] = ()
    excused: Sequence[tuple[datetime, datetime]] = ()
    challenges: Sequence[ChallengeInput] = ()
    challenges_passed: int = 0
    leases: Sequence[LeaseSpan] = ()
    forfeited: bool = False
    forfeit_reason: str = ""


def _span(pair: tuple[datetime, datetime]) -> list[str]:
    return [sdk.iso(pair[0]), sdk.iso(pair[1])]


def node_receipt(node: NodeEraInputs, params: RewardParams, *, era: tuple[datetime, datetime]) -> dict[str, Any]:
    """One node's receipt with its terms and points (not yet its $SPON: `era_receipts` shares the
    emission once every node's points are known)."""
    if node.unit_kind not in sdk.UNIT_KINDS:
        raise ValueError(f"node {node.node_id}: unit kind {node.unit_kind!r}")
    if node.tier not in params.tier_multipliers:
        raise ValueError(f"node {node.node_id}: no multiplier for tier {node.tier!r}")
    if not era[0] <= node.window[0] <= node.window[1] <= era[1]:
        raise ValueError(f"node {node.node_id}: the window is not inside the era")
    has_gpu = node.unit_kind == "gpu"
    listed = []
    passed = node.challenges_passed
    for challenge in node.challenges:
        if any(Decimal(value) for value in challenge.shortfall.values()):
            listed.append(
                {
                    "id": str(challenge.id),
                    "at": sdk.iso(challenge.at),
                    "status": challenge.status,
                    "shortfall": {name: sdk.plain(Decimal(challenge.shortfall.get(name, 0))) for name in sdk.RESOURCES},
                }
            )
        else:
            passed += 1
    receipt = {
        "version": sdk.VERSION,
        "formula": sdk.FORMULA,
        "node_id": node.node_id,
        "era": {"start": sdk.iso(era[0]), "end": sdk.iso(era[1])},
        "base": {
            "units": [
                {
                    "kind": node.unit_kind,
                    "count": node.unit_count,
                    "tier": node.tier,
                    "multiplier": sdk.plain(params.tier_multipliers[node.tier]),
                    "k": sdk.plain(params.k(node.unit_kind)),
                }
            ]
        },
        "uptime": {
            "window": _span(node.window),
            "outages": [_span(o) for o in node.outages],
            "excused": [_span(e) for e in node.excused],
            "threshold": sdk.plain(params.uptime_threshold),
        },
        "liveness": {
            "weights": {name: sdk.plain(w) for name, w in params.weights(has_gpu=has_gpu).items()},
            "passed": passed,
            "challenges": listed,
        },
        "trust": {"tier": node.trust_tier, "multiplier": sdk.plain(params.trust_multipliers[node.trust_tier])},
        "utilization": {
            "capacity_units": node.unit_count,
            "bonus": sdk.plain(params.utilization_bonus),
            "leases": [
                {"id": str(lease.id), "start": sdk.iso(lease.start), "end": sdk.iso(lease.end), "units": lease.units}
                for lease in node.leases
            ],
        },
        "forfeit": {"forfeited": node.forfeited, "reason": node.forfeit_reason},
    }
    return sdk.receipt_build(receipt)


def era_receipts(
    inputs: Iterable[NodeEraInputs], params: RewardParams, *, era: tuple[datetime, datetime]
) -> list[dict[str, Any]]:
    """The era's receipts, one per node: terms, points and $SPON (the era's emission shared pro
    rata; Σ amounts == the emission whenever any node has points). O(n), plus one sort of the
    nodes that share the left-over base units."""
    receipts = []
    built: dict[tuple, dict[str, Any]] = {}
    for node in inputs:
        key = _same_receipt_key(node)
        first = built.get(key) if key is not None else None
        if first is None:
            receipt = node_receipt(node, params, era=era)
            if key is not None:
                built[key] = receipt
        else:  # the same inputs as an earlier node's: its receipt, with this node's id
            receipt = orjson.loads(orjson.dumps(first))
            receipt["node_id"] = node.node_id
        receipts.append(receipt)
    return sdk.receipts_allocate(receipts, params.era_emission_base_units)


def _same_receipt_key(node: NodeEraInputs) -> tuple | None:
    """What a receipt's terms depend on besides the node's id, for nodes whose receipt names no
    lease and no challenge (most healthy nodes: their terms repeat); None for the others."""
    if node.leases or any(any(Decimal(v) for v in c.shortfall.values()) for c in node.challenges):
        return None
    return (
        node.window, node.unit_kind, node.unit_count, node.tier, node.trust_tier, tuple(node.outages),
        tuple(node.excused), node.challenges_passed + len(node.challenges), node.forfeited, node.forfeit_reason,
    )  # fmt: skip


# --- Shortfall of one challenge ----------------------------------------------------------------


def _short(found: Any, needed: Any) -> Decimal:
    """1 − found/needed, truncated to 6 decimals, in [0, 1] (nothing needed: no shortfall)."""
    needed_d, found_d = Decimal(str(needed or 0)), Decimal(str(found or 0))
    if needed_d <= 0 or found_d >= needed_d:
        return _ZERO
    return max(_ZERO, _ONE - found_d / needed_d).quantize(sdk.QUANTUM, rounding=ROUND_DOWN)


def challenge_shortfall(
    *, status: str, expected: Mapping[str, Any], measured: Mapping[str, Any], tolerance: Decimal
) -> dict[str, Decimal]:
    """A NodeChallenge's shortfall per resource, as the receipt lists it.

    passed: 0 everywhere. missed (no answer, or too late): 1 on every resource the node has.
    failed: per resource, 1 − measured/expected for each check that failed (providers.liveness
    .challenge_evaluate's checks: cores; total and free memory; free storage below the tolerance
    share; GPUs present, their model, GPUs with free VRAM), 0 for the checks that passed; a
    failure none of those explain (the nonce, an agent older than the minimum) counts as missed."""
    has_gpu = expected.get("gpu_kind") == "gpu"
    nothing = {name: _ZERO for name in sdk.RESOURCES}
    everything = {name: _ONE for name in sdk.RESOURCES} | ({} if has_gpu else {"gpu": _ZERO})
    if status == "passed":
        return nothing
    if status != "failed":
        return everything
    tolerance = Decimal(str(tolerance))
    result = dict(nothing)
    result["cpu"] = _short(measured.get("cpu_cores"), expected.get("cpu_cores"))
    free_memory = Decimal(str(measured.get("memory_available_gb") or 0))
    result["ram"] = max(
        _short(measured.get("memory_gb"), expected.get("memory_gb")),
        _short(free_memory, expected.get("memory_free_gb"))
        if free_memory < tolerance * Decimal(str(expected.get("memory_free_gb") or 0))
        else _ZERO,
    )
    free_storage = Decimal(str(measured.get("storage_free_gb") or 0))
    if free_storage < tolerance * Decimal(str(expected.get("storage_free_gb") or 0)):
        result["storage"] = _short(free_storage, expected.get("storage_free_gb"))
    if has_gpu:
        gpus = measured.get("gpus") or []
        names = {gpu_model_slug(str(g.get("name", "")), g.get("memory_total_mib")) for g in gpus}
        vram_mib = Decimal(str(expected.get("vram_gb") or 0)) * 1024
        free = [
            g
            for g in gpus
            if Decimal(str(g.get("memory_free_mib", 0)))
            >= tolerance * min(Decimal(str(g.get("memory_total_mib", 0))), vram_mib)
        ]
        if gpus and names != {expected.get("gpu_model")}:
            result["gpu"] = _ONE
        else:
            result["gpu"] = max(
                _short(len(gpus), expected.get("gpu_count")), _short(len(free), expected.get("gpus_free"))
            )
    if not any(result.values()):
        return everything
    return result


# --- The earnings calculator -------------------------------------------------------------------

_CALCULATOR_ERA = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 2, tzinfo=UTC))


def spon_per_point(*, emission_base_units: int, total_points: Decimal) -> Decimal:
    """Whole $SPON one point earned in an era (e.g. the last closed one): the calculator's assumption."""
    if total_points <= 0:
        return _ZERO
    return Decimal(emission_base_units).scaleb(-SPON_DECIMALS) / Decimal(total_points)


def earnings_estimate(
    *,
    tier: str,
    trust_tier: int,
    uptime: Decimal,
    utilization: Decimal,
    spon_per_point: Decimal,
    spon_usd_rate: Decimal,
    params: RewardParams,
    unit_kind: str = "gpu",
    unit_count: int = 1,
    cpu_cores: int = 0,
    memory_gb: int = 0,
    storage_gb: int = 0,
    shortfall: Decimal = _ZERO,
    hours: int = HOURS_PER_MONTH,
) -> dict[str, Any]:
    """What a node would earn over `hours` (a month: 730): $SPON rewards plus Fizz rental income.

    Inputs: `tier` a GPU tier slug (RTX 4090: "medium-1") or a CPU tier for unit_kind "cpu"
    (unit_count is then the cores); `trust_tier` 1–7; `uptime` and `utilization` (the leased share
    of online time) as fractions; `spon_per_point` the whole $SPON a point earned in a recent era
    (`spon_per_point()` of it: a hypothetical node's share of an emission cannot be known, so this
    is the stated assumption); `spon_usd_rate` USD per $SPON; `shortfall` the expected weighted
    liveness shortfall (0: every challenge passed); cpu_cores/memory_gb/storage_gb add the fixed
    Fizz per-resource prices to the GPU's hourly price.

    The points come from the same code as the eras: a one-era receipt (an outage of 1 − uptime of
    the era, a lease over `utilization` of the online time) built by `node_receipt`. Rental income
    = the node's Fizz hourly price × hours × uptime × utilization, less PLATFORM_FEE_FIZZ. Money in
    micro-USD, each line rounded once (half up); $SPON in base units, truncated."""
    uptime, utilization, shortfall = Decimal(str(uptime)), Decimal(str(utilization)), Decimal(str(shortfall))
    for name, value in (("uptime", uptime), ("utilization", utilization), ("shortfall", shortfall)):
        if not _ZERO <= value <= _ONE:
            raise ValueError(f"{name}: a fraction between 0 and 1")
    start, end = _CALCULATOR_ERA
    era_micros = int(ERA.total_seconds()) * 10**6
    down = timedelta(microseconds=int((_ONE - uptime) * era_micros))
    online_from = start + down
    leased = timedelta(microseconds=int(utilization * (era_micros - int((_ONE - uptime) * era_micros))))
    node = NodeEraInputs(
        node_id=0,
        window=(start, end),
        unit_kind=unit_kind,
        unit_count=unit_count,
        tier=tier,
        trust_tier=trust_tier,
        outages=[(start, online_from)] if down else [],
        challenges=[
            ChallengeInput(id="estimate", at=start, status="failed", shortfall=dict.fromkeys(sdk.RESOURCES, shortfall))
        ]
        if shortfall
        else [],
        leases=[LeaseSpan(id="estimate", start=online_from, end=online_from + leased, units=unit_count)]
        if leased
        else [],
    )
    receipt = node_receipt(node, params, era=_CALCULATOR_ERA)
    points = Decimal(receipt["points"])
    eras = Decimal(hours) / 24
    spon_tokens = points * hours * Decimal(str(spon_per_point)) / 24
    spon_base_units = int(spon_tokens.scaleb(SPON_DECIMALS).to_integral_value(rounding=ROUND_DOWN))
    spon_usd_micros = _round_micros(spon_tokens * Decimal(str(spon_usd_rate)) * 10**6)

    gpu_hourly = fizz_gpu_price_per_hour_micros(params.tier_multipliers[tier]) if unit_kind == "gpu" else 0
    price_per_hour = node_price_per_hour_micros(
        gpu_count=unit_count if unit_kind == "gpu" else 0,
        gpu_price_per_hour_micros=gpu_hourly,
        cpu_cores=cpu_cores if unit_kind == "gpu" else unit_count,
        cpu_price_per_core_month_micros=FIZZ_CPU_PER_CORE_MONTH,
        memory_gb=memory_gb,
        memory_price_per_gb_month_micros=FIZZ_MEMORY_PER_GB_MONTH,
        storage_gb=storage_gb,
        storage_price_per_gb_month_micros=FIZZ_STORAGE_PER_GB_MONTH,
    )
    leased_hours = Decimal(hours) * uptime * utilization
    gross = _round_micros(price_per_hour * leased_hours)
    fee = _round_micros(gross * params.platform_fee_fizz)
    return {
        "receipt": receipt,
        "points_per_era": points,
        "eras": eras,
        "spon_per_point": Decimal(str(spon_per_point)),
        "spon_base_units": spon_base_units,
        "spon_usd_micros": spon_usd_micros,
        "rental_price_per_hour_micros": price_per_hour,
        "leased_hours": leased_hours,
        "rental_gross_micros": gross,
        "rental_fee_micros": fee,
        "rental_net_micros": gross - fee,
        "total_usd_micros": gross - fee + spon_usd_micros,
    }


def _round_micros(micros: Decimal) -> int:
    return int(Decimal(micros).to_integral_value(rounding=ROUND_HALF_UP))


def params_to_json(params: RewardParams) -> dict[str, Any]:
    """The parameters as stored with an era (RewardEra.params): decimals as strings."""
    return {
        "k_per_gpu": sdk.plain(params.k_per_gpu),
        "k_per_cpu_core": sdk.plain(params.k_per_cpu_core),
        "uptime_threshold": sdk.plain(params.uptime_threshold),
        "weights_gpu": {name: sdk.plain(w) for name, w in params.weights_gpu.items()},
        "weights_cpu": {name: sdk.plain(w) for name, w in params.weights_cpu.items()},
        "trust_multipliers": {str(tier): sdk.plain(m) for tier, m in params.trust_multipliers.items()},
        "utilization_bonus": sdk.plain(params.utilization_bonus),
        "era_emission_spon": sdk.plain(params.era_emission_spon),
        "tier_multipliers": {tier: sdk.plain(m) for tier, m in params.tier_multipliers.items()},
        "platform_fee_fizz": sdk.plain(Decimal(str(params.platform_fee_fizz))),
    }


def params_from_json(data: Mapping[str, Any]) -> RewardParams:
    """`params_to_json`'s inverse: an era re-run uses the parameters it first ran with."""
    return RewardParams(
        k_per_gpu=Decimal(data["k_per_gpu"]),
        k_per_cpu_core=Decimal(data["k_per_cpu_core"]),
        uptime_threshold=Decimal(data["uptime_threshold"]),
        weights_gpu=_decimals(data["weights_gpu"]),
        weights_cpu=_decimals(data["weights_cpu"]),
        trust_multipliers={int(tier): Decimal(m) for tier, m in data["trust_multipliers"].items()},
        utilization_bonus=Decimal(data["utilization_bonus"]),
        era_emission_spon=Decimal(data["era_emission_spon"]),
        tier_multipliers=_decimals(data["tier_multipliers"]),
        platform_fee_fizz=Decimal(data["platform_fee_fizz"]),
    )
