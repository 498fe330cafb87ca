"""Era rewards: after the era close (providers.uptime.close_eras moved the trust tiers), each node
with a closed era gets its receipt, points, $SPON share and, in good standing, its floor top-up.

`era_rewards_run(era_start=…)` computes one era, or re-computes it: the inputs are what the
database holds of the era (NodeEra rows, outages, challenges, leases through providers.hooks,
forfeits, slashes) and the parameters and $SPON rate the era first ran with (kept on RewardEra),
so a re-run of an unchanged era changes nothing (`RewardEra.changed` counts what did change; a
changed floor top-up posts the difference to the ledger). `era_rewards_due()` runs every closed
era that has none yet (the beat's era close calls it).

The guaranteed minimum income (issue 22, part 3): a node in good standing for the era — era uptime
at least REWARD_FLOOR_MIN_UPTIME, no reconnect cool-down overlapping the era (an offline period that
ended less than NODE_REWARD_COOLDOWN_SECONDS before the era or within it), no failed or missed
challenge in its receipt, rewards not forfeited, no slash of the node in the era (failed slashes
and ones whose appeal was upheld do not count) — whose era income (rental earnings, net of the fee,
plus its $SPON valued at the era's rate) is below its floor (REWARD_FLOOR_USD_PER_UNIT_HOUR of its
tier × units × online hours) wants the difference. The subsidy pool pays at most
REWARD_FLOOR_POOL_USD an era: when the wanted top-ups exceed it, each is cut by the same ratio
(the budget / Σ wanted, truncated to 6 decimals; each top-up rounded down), so Σ paid ≤ budget.
Top-ups are one ledger transaction per run: the subsidy account pays each provider's pending
earnings. Without a $SPON rate (none recorded) rewards cannot be valued and no floor is paid.

A re-run whose inputs did change (an outage or a slash recorded late, an appeal upheld) changes the
era's receipts; the next rewards tree then carries the new sums. An address whose cumulative went
down is paid nothing more until its cumulative passes what it already claimed (RewardDistributor
pays cumulative − claimed): nothing is paid twice, and the difference is made good from later eras.

Rental earnings of a lease in the era: its meter's hourly price × the lease's online seconds in
the era (the node's online time, as the receipt counts it) / 3600, rounded down, less the fee
(rounded half up) — what the meter charges for that time.

Cost: O(nodes) with batched reads (BATCH nodes a query); bench/era.py measures it.
"""

from __future__ import annotations

import gc
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from spheron_sdk import rewards as sdk

from billing.models import AccountKind, TransactionKind
from billing.services import accounts_get_many, transaction_post
from chain.models import Rate
from chain.rates import usd_micros_for
from core import clock
from core.db import insert_rows
from core.errors import ApplicationError
from providers import hooks
from providers.models import (
    SPON_DECIMALS,
    AppealStatus,
    ChallengeStatus,
    Node,
    NodeChallenge,
    NodeEra,
    NodeOutage,
    NodeReward,
    OutageKind,
    RewardEra,
    Slash,
    SlashStatus,
)
from providers.rewards import (
    ChallengeInput,
    LeaseSpan,
    NodeEraInputs,
    RewardParams,
    challenge_shortfall,
    era_receipts,
    params_from_json,
    params_from_settings,
    params_to_json,
)
from providers.slashing import era_forfeit_reasons
from providers.uptime import ERA, last_era_end

logger = logging.getLogger(__name__)

BATCH = 5000
SPON_SYMBOL = "SPON"
_ZERO, _ONE = Decimal(0), Decimal(1)
_MICROS = Decimal(10**6)


# --- Floor parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorParams:
    per_unit_hour_usd: Mapping[str, Decimal]
    pool_usd: Decimal
    min_uptime: Decimal
    cooldown_seconds: int

    def to_json(self) -> dict[str, Any]:
        return {
            "per_unit_hour_usd": {tier: sdk.plain(Decimal(v)) for tier, v in self.per_unit_hour_usd.items()},
            "pool_usd": sdk.plain(Decimal(self.pool_usd)),
            "min_uptime": sdk.plain(Decimal(self.min_uptime)),
            "cooldown_seconds": self.cooldown_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FloorParams:
        return cls(
            per_unit_hour_usd={tier: Decimal(v) for tier, v in data["per_unit_hour_usd"].items()},
            pool_usd=Decimal(data["pool_usd"]),
            min_uptime=Decimal(data["min_uptime"]),
            cooldown_seconds=int(data["cooldown_seconds"]),
        )


def floor_params_from_settings() -> FloorParams:
    return FloorParams(
        per_unit_hour_usd={tier: Decimal(str(v)) for tier, v in settings.REWARD_FLOOR_USD_PER_UNIT_HOUR.items()},
        pool_usd=Decimal(str(settings.REWARD_FLOOR_POOL_USD)),
        min_uptime=Decimal(str(settings.REWARD_FLOOR_MIN_UPTIME)),
        cooldown_seconds=int(settings.NODE_REWARD_COOLDOWN_SECONDS),
    )


def _micros(value: Decimal, rounding: str = ROUND_HALF_UP) -> int:
    return int(Decimal(value).to_integral_value(rounding=rounding))


# --- Inputs --------------------------------------------------------------------------------------


@dataclass
class _NodeFacts:
    """What the era run knows of a node besides its receipt inputs."""

    provider_id: int
    unit_kind: str
    units: int
    tier: str
    leases: list[dict[str, Any]]
    in_cooldown: bool
    slashed: bool


def _unit_kind(gpu_tier: str) -> str:
    return "cpu" if gpu_tier.startswith("cpu-") else "gpu"


def _gather(
    node_ids: list[int], tiers: dict[int, int], era: tuple[datetime, datetime], cooldown: timedelta, tolerance: Decimal
) -> tuple[list[NodeEraInputs], dict[int, _NodeFacts]]:
    """One batch of nodes' inputs: a handful of queries whatever the batch's size. A batch is a
    slice of the era's sorted node ids, so each query reads the batch's id range (no list of
    thousands of ids to send) and what it returns of other nodes is never looked up."""
    start, end = era
    lo, hi = node_ids[0], node_ids[-1]
    nodes = (
        Node.objects.filter(id__gte=lo, id__lte=hi)
        .order_by("id")
        .values_list("id", "provider_id", "gpu_tier", "gpu_count", "cpu_cores", "registered_at", "created_at")
    )
    outages: dict[int, list[tuple[str, datetime, datetime | None]]] = defaultdict(list)
    for node_id, kind, started_at, ended_at in (
        NodeOutage.objects.filter(node_id__gte=lo, node_id__lte=hi, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start - cooldown))
        .order_by("node_id", "started_at", "id")
        .values_list("node_id", "kind", "started_at", "ended_at")
    ):
        outages[node_id].append((kind, started_at, ended_at))
    challenges: dict[int, list[ChallengeInput]] = defaultdict(list)
    in_era = NodeChallenge.objects.filter(node_id__gte=lo, node_id__lte=hi, issued_at__gte=start, issued_at__lt=end)
    for node_id, public_id, issued_at, status, expected, measured in (
        in_era.exclude(status__in=(ChallengeStatus.PASSED, ChallengeStatus.PENDING))
        .order_by("node_id", "issued_at", "id")
        .values_list("node_id", "public_id", "issued_at", "status", "expected", "measured")
    ):
        shortfall = challenge_shortfall(
            status=status, expected=expected or {}, measured=measured or {}, tolerance=tolerance
        )
        challenges[node_id].append(ChallengeInput(id=public_id, at=issued_at, status=status, shortfall=shortfall))
    passed_rows = in_era.filter(status=ChallengeStatus.PASSED).values("node_id").annotate(n=Count("id"))
    passed = dict(passed_rows.values_list("node_id", "n"))
    forfeits = era_forfeit_reasons(node_ids, start, end)
    leases = hooks.era_leases(node_ids, start, end)
    slashed = set(
        Slash.objects.filter(node_id__gte=lo, node_id__lte=hi, created_at__gte=start, created_at__lt=end)
        .exclude(status=SlashStatus.FAILED)
        .exclude(appeal__status=AppealStatus.UPHELD)
        .values_list("node_id", flat=True)
    )

    inputs, facts = [], {}
    for node_id, provider_id, gpu_tier, gpu_count, cpu_cores, registered_at, created_at in nodes:
        if node_id not in tiers:  # in the id range, without an era
            continue
        born = registered_at or created_at
        window = (max(start, born), end)
        kind = _unit_kind(gpu_tier)
        units = cpu_cores if kind == "cpu" else gpu_count
        down, excused = [], []
        in_cooldown = False
        for outage_kind, s, e in outages.get(node_id, ()):
            e = e or end
            if outage_kind == OutageKind.OFFLINE and e < end and e + cooldown > start:
                in_cooldown = True
            s, e = max(s, window[0]), min(e, end)
            if e <= s:
                continue
            (excused if outage_kind == OutageKind.MAINTENANCE else down).append((s, e))
        node_leases = leases.get(node_id, [])
        spans = [
            LeaseSpan(
                id=lease["id"],
                start=max(lease["start"], window[0]),
                end=lease["end"],
                units=min(units, lease["cpu_cores"] if kind == "cpu" else lease["gpus"]),
            )
            for lease in node_leases
            if lease["end"] > max(lease["start"], window[0])
        ]
        reason = forfeits.get(node_id, "")
        inputs.append(
            NodeEraInputs(
                node_id=node_id,
                window=window,
                unit_kind=kind,
                unit_count=units,
                tier=gpu_tier,
                trust_tier=tiers[node_id],
                outages=sdk.intervals_merge(down),
                excused=sdk.intervals_merge(excused),
                challenges=challenges.get(node_id, ()),
                challenges_passed=passed.get(node_id, 0),
                leases=spans,
                forfeited=bool(reason),
                forfeit_reason=reason,
            )
        )
        facts[node_id] = _NodeFacts(
            provider_id=provider_id,
            unit_kind=kind,
            units=units,
            tier=gpu_tier,
            leases=node_leases,
            in_cooldown=in_cooldown,
            slashed=node_id in slashed,
        )
    return inputs, facts


def _online(receipt_input: NodeEraInputs) -> list[tuple[datetime, datetime]]:
    holes = sdk.intervals_merge([*receipt_input.outages, *receipt_input.excused])
    return sdk.intervals_subtract([receipt_input.window], holes)


def _rental_micros(node: NodeEraInputs, leases: Iterable[dict[str, Any]]) -> int:
    """Rental earnings of the node's leases in the era, net of the fee (see the module's doc)."""
    online = None
    total = 0
    for lease in leases:
        if online is None:
            online = _online(node)
        seconds = 0
        for s, e in online:
            s, e = max(s, lease["start"]), min(e, lease["end"])
            if e > s:
                seconds += int((e - s).total_seconds())
        gross = lease["price_per_hour_micros"] * seconds // 3600
        fee = _micros(Decimal(gross) * Decimal(str(lease["fee_rate"])))
        total += gross - fee
    return total


# --- The era's rate --------------------------------------------------------------------------------


def era_spon_rate(era_end: datetime) -> Decimal | None:
    """USD per $SPON for an era: the last rate recorded at or before its end, else the first after."""
    rate = Rate.objects.filter(symbol=SPON_SYMBOL, at__lte=era_end).order_by("-at", "-id").first()
    if rate is None:
        rate = Rate.objects.filter(symbol=SPON_SYMBOL, at__gt=era_end).order_by("at", "id").first()
    return None if rate is None else rate.usd_per_unit


# --- The run ---------------------------------------------------------------------------------------


_COMPARED = (
    "provider_id",
    "receipt",
    "points",
    "spon",
    "spon_usd_micros",
    "online_seconds",
    "rental_micros",
    "floor_eligible",
    "floor_reason",
    "floor_micros",
    "floor_wanted_micros",
    "floor_topup_micros",
)


def _floor_terms(
    receipt: Mapping[str, Any], facts: _NodeFacts, floor: FloorParams, *, income: int, rate: Decimal | None
) -> tuple[bool, str, int, int]:
    """(eligible, why not, floor, wanted) of one node."""
    online = Decimal(receipt["uptime"]["online_seconds"])
    per_hour = floor.per_unit_hour_usd.get(facts.tier, _ZERO)
    floor_micros = _micros(per_hour * facts.units * online * _MICROS / 3600, ROUND_DOWN)
    reasons = []
    if Decimal(receipt["uptime"]["uptime"]) < floor.min_uptime:
        reasons.append(f"era uptime {Decimal(receipt['uptime']['uptime']):.2%} is below {floor.min_uptime:.0%}")
    if facts.in_cooldown:
        reasons.append("in a reconnect cool-down during the era")
    if receipt["liveness"]["challenges"]:
        reasons.append("a failed or missed liveness challenge")
    if receipt["forfeit"]["forfeited"]:
        reasons.append("rewards forfeited")
    if facts.slashed:
        reasons.append("slashed during the era")
    if rate is None:
        reasons.append("no $SPON rate to value the rewards")
    if reasons:
        return False, "; ".join(reasons)[:200], floor_micros, 0
    return True, "", floor_micros, max(0, floor_micros - income)


def era_rewards_run(*, era_start: datetime, now: datetime | None = None) -> RewardEra:
    """Compute (or re-compute) the rewards of the era starting at `era_start` (00:00 UTC); see the
    module's doc. One transaction: the era, its NodeRewards and the floor's ledger posting."""
    now = now or clock.now()
    era_start = era_start.astimezone(UTC)
    if era_start != last_era_end(era_start):
        raise ApplicationError("An era starts at 00:00 UTC.", status=400)
    era_end = era_start + ERA
    if era_end > last_era_end(now):
        raise ApplicationError(f"The era of {era_start:%Y-%m-%d} has not ended yet.", status=400)

    with transaction.atomic():
        era, _ = RewardEra.objects.get_or_create(started_at=era_start, defaults={"ended_at": era_end})
        era = RewardEra.objects.select_for_update().get(id=era.id)
        if era.params:
            params = params_from_json(era.params["reward"])
            floor = FloorParams.from_json(era.params["floor"])
            rate = era.spon_usd_rate
        else:
            params, floor = params_from_settings(), floor_params_from_settings()
            rate = era_spon_rate(era_end)
            era.params = {"reward": params_to_json(params), "floor": floor.to_json()}
            era.spon_usd_rate = rate
            era.emission = params.era_emission_base_units
        with _gc_paused():
            rows = _era_compute(era, params, floor, rate)
            _era_write(era, rows, floor, now=now)
    return era


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while an era's objects are built (hundreds of thousands of
    dicts that live until the era is written): each full collection would walk all of them again,
    which made the run grow faster than the nodes (bench/era.py). Reference counting still frees."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _era_compute(era: RewardEra, params: RewardParams, floor: FloorParams, rate: Decimal | None) -> list[NodeReward]:
    bounds = (era.started_at, era.ended_at)
    tiers = dict(NodeEra.objects.filter(started_at=era.started_at).values_list("node_id", "tier_before"))
    node_ids = sorted(tiers)
    cooldown = timedelta(seconds=floor.cooldown_seconds)
    tolerance = Decimal(str(settings.NODE_CHALLENGE_TOLERANCE))
    inputs: list[NodeEraInputs] = []
    facts: dict[int, _NodeFacts] = {}
    for offset in range(0, len(node_ids), BATCH):
        batch_inputs, batch_facts = _gather(node_ids[offset : offset + BATCH], tiers, bounds, cooldown, tolerance)
        inputs.extend(batch_inputs)
        facts.update(batch_facts)
    receipts = era_receipts(inputs, params, era=bounds)

    rows = []
    for node, receipt in zip(inputs, receipts, strict=True):
        fact = facts[node.node_id]
        spon = int(receipt["spon"]["amount"])
        spon_usd = 0 if rate is None else usd_micros_for(spon, decimals=SPON_DECIMALS, usd_per_unit=rate)
        rental = _rental_micros(node, fact.leases)
        eligible, why, floor_micros, wanted = _floor_terms(receipt, fact, floor, income=rental + spon_usd, rate=rate)
        rows.append(
            NodeReward(
                era=era,
                node_id=node.node_id,
                provider_id=fact.provider_id,
                receipt=receipt,
                points=Decimal(receipt["points"]),
                spon=Decimal(spon),
                spon_usd_micros=spon_usd,
                online_seconds=int(Decimal(receipt["uptime"]["online_seconds"])),
                rental_micros=rental,
                floor_eligible=eligible,
                floor_reason=why,
                floor_micros=floor_micros,
                floor_wanted_micros=wanted,
            )
        )
    budget = _micros(floor.pool_usd * _MICROS, ROUND_DOWN)
    wanted_total = sum(row.floor_wanted_micros for row in rows)
    ratio = _ONE if wanted_total <= budget else (Decimal(budget) / wanted_total).quantize(sdk.QUANTUM, ROUND_DOWN)
    for row in rows:
        row.floor_topup_micros = _micros(row.floor_wanted_micros * ratio, ROUND_DOWN)
    era.floor_budget_micros, era.floor_wanted_micros, era.floor_ratio = budget, wanted_total, ratio
    return rows


def _same(old: NodeReward, new: NodeReward) -> bool:
    return all(
        (Decimal(getattr(old, f)) == Decimal(getattr(new, f)))
        if f in ("points", "spon")
        else getattr(old, f) == getattr(new, f)
        for f in _COMPARED
    )


def _era_write(era: RewardEra, rows: list[NodeReward], floor: FloorParams, *, now: datetime) -> None:
    existing = {row.node_id: row for row in NodeReward.objects.filter(era=era)}
    creates, updates = [], []
    paid_before: dict[int, int] = defaultdict(int)
    paid_now: dict[int, int] = defaultdict(int)
    for row in rows:
        paid_now[row.provider_id] += row.floor_topup_micros
        old = existing.pop(row.node_id, None)
        if old is None:
            creates.append(row)
            continue
        paid_before[old.provider_id] += old.floor_topup_micros
        if not _same(old, row):
            row.id, row.address = old.id, old.address
            updates.append(row)
    gone = list(existing.values())  # a NodeEra removed since the last run (a deleted node's cascade)
    for old in gone:
        paid_before[old.provider_id] += old.floor_topup_micros
    if gone:
        NodeReward.objects.filter(id__in=[old.id for old in gone]).delete()
    insert_rows(NodeReward, creates)
    if updates:
        NodeReward.objects.bulk_update(updates, [f.removesuffix("_id") for f in _COMPARED], batch_size=2000)

    era.runs += 1
    era.changed = (len(creates) + len(updates) + len(gone)) if era.runs > 1 else 0
    deltas = {p: paid_now.get(p, 0) - paid_before.get(p, 0) for p in set(paid_now) | set(paid_before)}
    deltas = {p: d for p, d in deltas.items() if d}
    if deltas:
        _floor_post(era, deltas)
    era.nodes = len(rows)
    era.points = sum((row.points for row in rows), _ZERO)
    era.spon = sum(int(row.spon) for row in rows)
    era.floor_paid_micros = sum(paid_now.values())
    era.computed_at = now
    era.save()


def _floor_post(era: RewardEra, deltas: dict[int, int]) -> None:
    """One ledger transaction: the subsidy pool pays each provider's top-ups (or takes back what a
    re-run no longer owes) into their pending earnings."""
    from providers.models import ProviderProfile

    users = dict(ProviderProfile.objects.filter(id__in=deltas).values_list("id", "user_id"))
    accounts = accounts_get_many(kind=AccountKind.PROVIDER_PENDING, user_ids=list(users.values()))
    subsidy = accounts_get_many(kind=AccountKind.PLATFORM_SUBSIDY, user_ids=[None])[None]
    lines = [(accounts[users[p]], amount) for p, amount in deltas.items()]
    lines.append((subsidy, -sum(deltas.values())))
    transaction_post(
        kind=TransactionKind.FLOOR_TOPUP,
        reference_type="reward_era",
        reference_id=str(era.id),
        lines=lines,
        idempotency_key=f"floor:{era.started_at:%Y-%m-%d}:run:{era.runs}",
        memo=f"Floor top-ups of the era of {era.started_at:%Y-%m-%d} (run {era.runs})",
    )


def era_rewards_due(*, now: datetime | None = None, max_eras: int = 30) -> int:
    """Run every closed era (NodeEra rows exist) of the last `max_eras` that has no rewards yet."""
    now = now or clock.now()
    since = last_era_end(now) - ERA * max_eras
    closed = set(
        NodeEra.objects.filter(started_at__gte=since, ended_at__lte=last_era_end(now))
        .values_list("started_at", flat=True)
        .distinct()
    )
    done = set(RewardEra.objects.filter(started_at__gte=since, runs__gt=0).values_list("started_at", flat=True))
    count = 0
    for era_start in sorted(closed - done):
        era_rewards_run(era_start=era_start, now=now)
        count += 1
    return count


def eras_close(*, now: datetime | None = None) -> dict[str, Any]:
    """The beat's era close: trust tiers (providers.uptime.close_eras), then the rewards of every
    era that has none yet, then the cumulative rewards tree after the latest (providers.reward_claims;
    its root is sent by the run_reward_trees task)."""
    from providers.reward_claims import rewards_tree_build
    from providers.uptime import close_eras

    now = now or clock.now()
    closed = close_eras(now=now)
    rewarded = era_rewards_due(now=now)
    latest = RewardEra.objects.filter(runs__gt=0).order_by("-started_at").first()
    tree = rewards_tree_build(era=latest, now=now) if latest is not None else None
    return {"eras_closed": closed, "eras_rewarded": rewarded, "tree": tree.root if tree is not None else ""}
