"""/api/v1 routes for node agents (token/secret auth, providers.auth) and providers (session or API
key). A node's lease events are marketplace.deployments' route (deployments/agent_api.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.urls import reverse
from ninja import Query, Router, Status
from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
)
from spheron_sdk import rewards as sdk_rewards

from accounts.auth import api_auth
from core import clock
from core.cursors import cursor_fields, encode_cursor
from core.errors import ApplicationError
from core.money import exact_usd, exact_usd_or_none, parse_plain_decimal
from core.schemas import ERRORS, AgentIn
from core.throttle import auth_failure
from providers import earnings, liveness, selectors, services
from providers.auth import MAX_NODE_PAYLOAD_BYTES as MAX_NODE_PAYLOAD_BYTES  # heartbeat_wsgi reads it here
from providers.auth import NodeHeartbeatAuth, NodeTokenAuth
from providers.calculator import estimate_for_query, estimate_json
from providers.registration import node_register

node_router = Router(tags=["nodes"])
provider_router = Router(tags=["provider"], auth=api_auth)

Text = Annotated[str, StringConstraints(max_length=255)]
ShortText = Annotated[str, StringConstraints(max_length=64)]


class GpuReport(AgentIn):
    index: StrictInt = Field(0, ge=0, le=64)
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    uuid: Text = ""
    memory_total_mib: StrictInt | None = Field(None, ge=0, le=10_000_000)
    memory_used_mib: StrictInt | None = Field(None, ge=0, le=10_000_000)
    utilization_percent: StrictInt | StrictFloat | None = Field(None, ge=0, le=100)


class HardwareReport(AgentIn):
    cpu_model: Text = ""
    cpu_cores: StrictInt = Field(ge=1, le=4096)
    memory_gb: StrictInt = Field(ge=1, le=65536)
    storage_gb: StrictInt = Field(ge=0, le=10_000_000)
    bandwidth_mbps: StrictInt | None = Field(None, ge=0, le=1_000_000)
    gpus: list[GpuReport] = Field(default_factory=list, max_length=64)
    driver_version: ShortText | None = None
    cuda_version: ShortText | None = None
    apple_chip: ShortText | None = None


class RegisterIn(AgentIn):
    machine_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    hostname: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    agent_version: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    os: Annotated[str, StringConstraints(max_length=200)] = ""
    arch: ShortText = ""
    runtime: Literal["process", "docker"] = "docker"
    region: Annotated[str, StringConstraints(max_length=32)] | None = None
    price_per_hour: Decimal | None = Field(None, gt=0, le=100, description="USD per GPU-hour")
    hardware: HardwareReport

    @field_validator("price_per_hour", mode="before")
    @classmethod
    def _price_text(cls, value: Any) -> Any:
        # Not a boolean, and as text ASCII digits only: Decimal() also reads '٣' or '３' as a price.
        if isinstance(value, bool) or (isinstance(value, str) and parse_plain_decimal(value) is None):
            raise ValueError('must be a price in USD, e.g. "0.30"')
        return value


class RentableOut(BaseModel):
    """What makes the node matchable: the provider's stake per GPU (a CPU-only machine is one)."""

    stake_covered: bool
    min_stake_per_gpu_spon: str
    units: int
    staked_spon: str
    required_spon: str
    message: str


class RegisterOut(BaseModel):
    node_id: int
    node_secret: str
    status: str
    mode: str
    gpu_model: str
    gpu_count: int
    gpu_tier: str
    trust_tier: int
    price_per_hour: str
    heartbeat_interval_seconds: int
    warnings: list[str]
    rentable: RentableOut


class UsageIn(AgentIn):
    cpu_percent: StrictInt | StrictFloat | None = Field(None, ge=0, le=100)
    memory_used_gb: StrictInt | StrictFloat | None = Field(None, ge=0, le=65536)
    storage_free_gb: StrictInt | StrictFloat | None = Field(None, ge=0, le=10_000_000)
    gpu_utilization_percent: list[StrictInt | StrictFloat] = Field(default_factory=list, max_length=64)
    gpu_memory_used_mib: list[StrictInt | StrictFloat] = Field(default_factory=list, max_length=64)


class MeasuredGpu(AgentIn):
    name: Annotated[str, StringConstraints(max_length=120)] = ""
    memory_total_mib: StrictInt = Field(0, ge=0, le=10_000_000)
    memory_free_mib: StrictInt = Field(0, ge=0, le=10_000_000)


class Measured(AgentIn):
    agent_version: ShortText = ""
    cpu_cores: StrictInt = Field(0, ge=0, le=4096)
    memory_gb: StrictInt = Field(0, ge=0, le=65536)
    memory_available_gb: StrictInt | StrictFloat = Field(0, ge=0, le=65536)
    storage_free_gb: StrictInt | StrictFloat = Field(0, ge=0, le=10_000_000)
    gpus: list[MeasuredGpu] = Field(default_factory=list, max_length=64)


class ChallengeResponseIn(AgentIn):
    id: Annotated[str, StringConstraints(max_length=64)]
    nonce: Annotated[str, StringConstraints(max_length=128)]
    measured: Measured


class LeaseStateIn(AgentIn):
    lease_id: StrictInt = Field(ge=1)
    state: Literal["provisioning", "running", "exited", "failed", "stopped"]


class HeartbeatIn(AgentIn):
    agent_version: Annotated[str, StringConstraints(max_length=32)] = ""
    sequence: StrictInt = Field(0, ge=0, le=2**62)
    usage: UsageIn = Field(default_factory=UsageIn)
    challenge_responses: list[ChallengeResponseIn] = Field(default_factory=list, max_length=20)
    leases: list[LeaseStateIn] = Field(default_factory=list, max_length=256)
    stopping: StrictBool = False


class ChallengeOut(BaseModel):
    id: str
    nonce: str
    kind: str
    expires_at: str


class HeartbeatOut(BaseModel):
    status: str
    maintenance: bool
    server_time: str
    heartbeat_interval_seconds: int
    challenges: list[ChallengeOut]
    assignments: list[dict[str, Any]]


@node_router.post(
    "/nodes/register",
    auth=NodeTokenAuth(),
    response={200: RegisterOut, 201: RegisterOut, **ERRORS},
    operation_id="node_register",
    summary="Register a machine with a node token (the fizz agent calls this)",
)
def register(request: HttpRequest, payload: RegisterIn):
    report = payload.model_dump()
    if report["price_per_hour"] is not None:
        report["price_per_hour"] = str(report["price_per_hour"])
    try:
        result = node_register(raw_token=request.auth, report=report)  # type: ignore[arg-type]
    except ApplicationError as exc:
        if exc.status == 401:  # the token is unknown or revoked
            auth_failure(request)
        raise
    node = result.node
    return Status(
        201 if result.created else 200,
        {
            "node_id": node.id,
            "node_secret": result.secret,
            "status": node.status,
            "mode": node.mode,
            "gpu_model": node.gpu_model_id,
            "gpu_count": node.gpu_count,
            "gpu_tier": node.gpu_tier,
            "trust_tier": node.trust_tier,
            "price_per_hour": exact_usd(node.price_per_hour_micros),
            "heartbeat_interval_seconds": _interval(),
            "warnings": result.warnings,
            "rentable": result.rentable,
        },
    )


def _interval() -> int:
    from django.conf import settings

    return settings.NODE_HEARTBEAT_INTERVAL_SECONDS


@node_router.post(
    "/nodes/{node_id}/heartbeat",
    auth=NodeHeartbeatAuth(),
    response={200: HeartbeatOut, **ERRORS},
    operation_id="node_heartbeat",
    summary="A node's heartbeat: usage in, challenges and assignments out",
)
def heartbeat(request: HttpRequest, node_id: int, payload: HeartbeatIn):
    if request.auth != node_id:  # type: ignore[attr-defined]
        raise ApplicationError("No such node.", status=404)
    return heartbeat_handle(node_id, request.node_info, request.node_cached, payload)  # type: ignore[attr-defined]


def heartbeat_handle(node_id: int, info: dict[str, Any], cached: dict[str, Any], payload: HeartbeatIn) -> dict:
    """The heartbeat once authenticated and validated; also called by `providers.heartbeat_wsgi`."""
    return liveness.heartbeat_receive(
        node_id=node_id,
        info=info,
        sequence=payload.sequence,
        agent_version=payload.agent_version,
        usage=payload.usage.model_dump(exclude_none=True),
        challenge_responses=[r.model_dump() for r in payload.challenge_responses],
        leases=[lease.model_dump() for lease in payload.leases],
        stopping=payload.stopping,
        cached=cached,
    )


# --- Provider routes ---------------------------------------------------------------------------


class NodeOut(BaseModel):
    id: int
    name: str
    mode: str
    region: str
    gpu_model: str
    gpu_count: int
    gpu_tier: str
    trust_tier: int
    status: str
    in_maintenance: bool
    stake_covered: bool
    needs_review: bool
    last_seen_at: str | None
    uptime_1d: float
    uptime_7d: float
    uptime_30d: float
    price_per_hour: str


class TokenIn(AgentIn):
    label: Annotated[str, StringConstraints(max_length=200)]
    mode: Literal["fizz", "provider"] | None = None
    region: Annotated[str, StringConstraints(max_length=32)] | None = None


class TokenOut(BaseModel):
    id: int
    label: str
    mode: str
    prefix: str
    node_id: int | None
    created_at: str
    revoked_at: str | None
    token: str | None = Field(None, description="The whole token: returned only when it is created")


class MaintenanceIn(AgentIn):
    on: StrictBool


def _profile(request: HttpRequest):
    return services.get_provider_for_user(request.auth)  # type: ignore[arg-type]


def _token_out(token, raw: str | None = None) -> dict[str, Any]:
    return {
        "id": token.id,
        "label": token.label,
        "mode": token.mode,
        "prefix": token.prefix,
        "node_id": token.node_id,
        "created_at": token.created_at.isoformat(),
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
        "token": raw,
    }


@provider_router.get("/nodes", response={200: list[NodeOut], **ERRORS}, operation_id="provider_nodes")
def provider_nodes(request: HttpRequest):
    rows = selectors.provider_node_rows(provider=_profile(request))
    return [
        {
            **{key: row[key] for key in NodeOut.model_fields if key in row},
            "last_seen_at": row["last_seen_at"].isoformat() if row["last_seen_at"] else None,
        }
        for row in rows
    ]


@provider_router.post("/tokens", response={201: TokenOut, **ERRORS}, operation_id="provider_token_create")
def token_create(request: HttpRequest, payload: TokenIn):
    token, raw = services.node_token_create(
        provider=_profile(request), label=payload.label, mode=payload.mode, region=payload.region
    )
    return Status(201, _token_out(token, raw))


@provider_router.get("/tokens", response={200: list[TokenOut], **ERRORS}, operation_id="provider_tokens")
def token_list(request: HttpRequest):
    return [_token_out(token) for token in services.node_token_list(provider=_profile(request))]


@provider_router.post(
    "/tokens/{token_id}/revoke", response={200: TokenOut, **ERRORS}, operation_id="provider_token_revoke"
)
def token_revoke(request: HttpRequest, token_id: int):
    return _token_out(services.node_token_revoke(provider=_profile(request), token_id=token_id))


@provider_router.post(
    "/nodes/{node_id}/maintenance", response={200: NodeOut, **ERRORS}, operation_id="provider_node_maintenance"
)
def node_maintenance(request: HttpRequest, node_id: int, payload: MaintenanceIn):
    profile = _profile(request)
    services.node_maintenance_set(provider=profile, node_id=node_id, on=payload.on)
    row = next(r for r in selectors.provider_node_rows(provider=profile) if r["id"] == node_id)
    return {
        **{key: row[key] for key in NodeOut.model_fields if key in row},
        "last_seen_at": row["last_seen_at"].isoformat() if row["last_seen_at"] else None,
    }


# --- The earnings calculator (public) ------------------------------------------------------------

QueryText = Annotated[str, StringConstraints(max_length=64)]


class EarningsEstimateQuery(BaseModel):
    """The calculator's inputs as a query string; providers.calculator.CalculatorForm checks them
    (the same form as the page), so a bad value is a 400 naming the field."""

    gpu: QueryText = Field(description="A model of the catalog (GET /api/v1/gpu-models): rtx4090, apple-m2, cpu-hpc")
    count: QueryText | None = Field(None, description="GPUs, 1–64 (default 1; a Fizz node has one)")
    cores: QueryText | None = Field(None, description="CPU cores, 1–4096: required for a CPU-only or Apple machine")
    mode: QueryText | None = Field(None, description="fizz (default) or provider")
    price: QueryText | None = Field(
        None, description="Provider mode: USD per GPU-hour, e.g. 0.30 (default: the catalog's median for the model)"
    )
    tier: QueryText = Field(description="Trust tier 1–7 (new nodes start in 7, which earns no $SPON; Fizz: 4–7)")
    uptime: QueryText = Field(description="Uptime percent, 0–100")
    utilization: QueryText = Field(description="Leased share of online time, percent, 0–100")


class EarningsEstimateOut(BaseModel):
    inputs: dict[str, Any]
    points_per_era: str
    eras_per_month: str
    spon_per_point: str = Field(description="$SPON one point earns: the stated assumption")
    spon_per_point_source: Literal["last_era", "assumed"]
    spon_per_point_assumption: str
    spon_per_month: str = Field(description="Whole $SPON a month")
    spon_usd_rate: str | None = Field(description="USD per $SPON now; null without a current rate")
    spon_usd_per_month: str | None
    no_rate_reason: str
    rental_price_per_hour: str = Field(description="USD per machine-hour the estimate rents at")
    rental_price_source: Literal["fizz", "yours", "market_median", "fizz_fallback"]
    leased_hours: str
    rental_gross: str
    platform_fee_rate: str
    platform_fee: str
    rental_net: str
    total_usd: str = Field(description="Net rental income plus the $SPON's USD value (rental only without a rate)")
    formulas: dict[str, str] = Field(description="Each figure's formula in one line")
    notes: list[str]
    receipt: dict[str, Any] = Field(description="The one-era receipt the points come from (spheron_sdk.rewards)")


@node_router.get(
    "/providers/earnings-estimate",
    auth=None,
    tags=["provider"],
    response={200: EarningsEstimateOut, **ERRORS},
    operation_id="provider_earnings_estimate",
    summary="What a machine would earn a month: $SPON rewards by the era formula plus rental income",
)
def provider_earnings_estimate(request: HttpRequest, query: Query[EarningsEstimateQuery]):
    """The earnings calculator of /provider/calculator/, as JSON; every decimal a string (USD with
    6 decimals). Public: no login. Bad input: 400 with `extra.errors` listing each field."""
    return estimate_json(estimate_for_query(query.model_dump(exclude_none=True)))


# --- A node's era rewards ------------------------------------------------------------------------


class RecomputedOut(BaseModel):
    points: str | None = Field(description="Points spheron_sdk.rewards.reward_recompute gives from the receipt")
    spon: str | None = Field(description="$SPON base units it gives")
    matches: bool = Field(description="Both equal what the node was given, and every stated term checks")


class NodeRewardOut(BaseModel):
    era_id: int
    era_start: datetime
    era_end: datetime
    points: str
    spon: str = Field(description="$SPON base units (18 decimals)")
    spon_tokens: str = Field(description="Whole $SPON, exact")
    spon_usd_rate: str | None = Field(description="USD per $SPON the era valued rewards at; null without a rate")
    spon_usd: str
    online_seconds: int
    rental: str = Field(description="Rental earnings in the era, net of the fee, USD")
    floor_eligible: bool
    floor_reason: str
    floor: str = Field(description="The node's floor for the era, USD")
    floor_wanted: str
    floor_topup: str = Field(description="Top-up paid into pending earnings, USD")
    recomputed: RecomputedOut
    receipt_url: str = Field(description="The receipt as JSON (session login)")
    receipt: dict[str, Any] = Field(description="Every term and its inputs (spheron_sdk.rewards receipt v1)")


class NodeRewardPageOut(BaseModel):
    items: list[NodeRewardOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


def _reward_cursor(cursor: str) -> datetime:
    data = cursor_fields(cursor, {"era"})
    try:
        started = datetime.fromisoformat(data["era"]) if data and isinstance(data["era"], str) else None
    except ValueError:
        started = None
    if started is None or started.tzinfo is None:
        raise ApplicationError(
            "Invalid input. cursor: not a cursor this API returned; start again without it.",
            {"field": "cursor", "errors": [{"field": "cursor", "message": "not a cursor this API returned"}]},
            status=422,
        )
    return started


def _reward_item(request: HttpRequest, reward) -> dict[str, Any]:
    explained = earnings.receipt_explained(reward)
    rate = reward.era.spon_usd_rate
    return {
        "era_id": reward.era_id,
        "era_start": reward.era.started_at,
        "era_end": reward.era.ended_at,
        "points": sdk_rewards.plain(Decimal(reward.points)),
        "spon": str(int(reward.spon)),
        "spon_tokens": earnings.spon_tokens(reward.spon),
        "spon_usd_rate": sdk_rewards.plain(Decimal(rate)) if rate is not None else None,
        "spon_usd": exact_usd(reward.spon_usd_micros),
        "online_seconds": reward.online_seconds,
        "rental": exact_usd(reward.rental_micros),
        "floor_eligible": reward.floor_eligible,
        "floor_reason": reward.floor_reason,
        "floor": exact_usd(reward.floor_micros),
        "floor_wanted": exact_usd(reward.floor_wanted_micros),
        "floor_topup": exact_usd(reward.floor_topup_micros),
        "recomputed": {
            "points": explained["points"]["recomputed"] or None,
            "spon": str(explained["spon"]["recomputed"]) if explained["spon"]["recomputed"] != "" else None,
            "matches": explained["matches"],
        },
        "receipt_url": request.build_absolute_uri(
            reverse("providers:node_reward_receipt", args=[reward.node_id, reward.era_id])
        ),
        "receipt": reward.receipt,
    }


@provider_router.get(
    "/nodes/{node_id}/rewards",
    response={200: NodeRewardPageOut, **ERRORS},
    operation_id="provider_node_rewards",
    summary="A node's era rewards with their receipts, newest era first",
)
def node_rewards(
    request: HttpRequest,
    node_id: int,
    limit: int = Query(20, ge=1, le=100, description="Items per page, at most 100"),
    cursor: str | None = Query(None, max_length=200, description="next_cursor from the previous page"),
):
    """Your node's rewards per era: points, $SPON, USD, rental and the floor, each with its receipt
    (recompute it with spheron_sdk.rewards.reward_recompute). Another provider's node is a 404."""
    node = services.get_node_for_provider(provider=_profile(request), node_id=node_id)
    rewards = earnings.node_rewards(node=node)
    if cursor:
        rewards = rewards.filter(era__started_at__lt=_reward_cursor(cursor))
    rows = list(rewards[: limit + 1])
    page = rows[:limit]
    next_cursor = encode_cursor({"era": page[-1].era.started_at.isoformat()}) if len(rows) > limit else None
    return {"items": [_reward_item(request, reward) for reward in page], "next_cursor": next_cursor}


# --- Stake and earnings ----------------------------------------------------------------------------


class StakeEventOut(BaseModel):
    kind: str = Field(description="stake, unstake, slash or withdraw")
    amount: str = Field(description="$SPON base units (18 decimals)")
    amount_spon: str = Field(description="The same in whole $SPON")
    balance_after_spon: str
    reason: str
    source: str = Field(description="admin (an off-chain agreement) or chain")
    chain_id: int | None
    tx_hash: str
    address: str
    created_at: datetime


class StakeOut(BaseModel):
    staked_spon: str = Field(description="Counted stake, whole $SPON")
    required_spon: str = Field(description="What the provider's units need: min_per_gpu_spon × units")
    shortfall_spon: str = Field(description="required − staked, at least 0")
    covered: bool = Field(description="The stake covers every unit")
    min_per_gpu_spon: str
    units: int = Field(description="Units the stake must cover: GPUs, and one per CPU-only or Apple machine")
    gpu_units: int
    cpu_machines: int
    apple_machines: int
    demo_gpus: int = Field(description="GPUs of simulated (demo) nodes: they need no stake")
    uncovered_nodes: list[str] = Field(description="Names of the nodes the stake does not cover")
    history: list[StakeEventOut] = Field(description="The latest 50 stake changes, newest first")


@provider_router.get(
    "/stake",
    response={200: StakeOut, **ERRORS},
    operation_id="provider_stake",
    summary="The provider's $SPON stake, what its nodes need, and its history",
)
def provider_stake(request: HttpRequest):
    """The stake page's figures (providers.selectors.stake_summary). Not a provider: 403."""
    summary = selectors.stake_summary(provider=_profile(request))
    return {
        "staked_spon": sdk_rewards.plain(summary["staked"]),
        "required_spon": sdk_rewards.plain(summary["required"]),
        "shortfall_spon": sdk_rewards.plain(summary["shortfall"]),
        "covered": summary["shortfall"] == 0,
        "min_per_gpu_spon": sdk_rewards.plain(summary["min_per_gpu"]),
        "units": summary["gpus"],
        "gpu_units": summary["gpu_units"],
        "cpu_machines": summary["cpu_machines"],
        "apple_machines": summary["apple_machines"],
        "demo_gpus": summary["demo_gpus"],
        "uncovered_nodes": summary["uncovered_nodes"],
        "history": [
            {
                "kind": event.kind,
                "amount": str(int(event.amount)),
                "amount_spon": earnings.spon_tokens(event.amount),
                "balance_after_spon": earnings.spon_tokens(event.balance_after),
                "reason": event.reason,
                "source": event.source,
                "chain_id": event.chain_id,
                "tx_hash": event.tx_hash,
                "address": event.address,
                "created_at": event.created_at,
            }
            for event in summary["history"]
        ],
    }


EARNINGS_MAX_DAYS = 90


class EarningsDayOut(BaseModel):
    day: str = Field(description="The UTC day, YYYY-MM-DD (the totals' is the last day)")
    rental: str = Field(description="Rental income net of the fee, USD (6 decimals)")
    spon: str = Field(description="$SPON rewards, base units")
    spon_tokens: str = Field(description="The same in whole $SPON")
    spon_usd: str = Field(description="The rewards in USD at each era's rate")
    unrated_rewards: int = Field(description="Node rewards from eras without a $SPON rate (valued at $0 USD)")
    floor: str = Field(description="Floor top-ups, USD")
    slash_spon: str = Field(description="$SPON slashed, base units")
    slash_usd: str | None = Field(description="The slashes at the current $SPON rate; null without a rate")
    total: str = Field(description="rental + spon_usd + floor − slash_usd (slashes without a rate not counted)")


class EarningsOut(BaseModel):
    days: int
    first: str
    last: str
    node_id: int | None
    slash_rate: str | None = Field(description="USD per $SPON the slashes are valued at; null without a rate")
    slash_rate_at: datetime | None
    no_rate_reason: str
    totals: EarningsDayOut
    items: list[EarningsDayOut] = Field(description="One per UTC day, oldest first")


def _earnings_day(item: earnings.EarningsDay) -> dict[str, Any]:
    return {
        "day": item.day.isoformat(),
        "rental": exact_usd(item.rental_micros),
        "spon": str(int(item.spon)),
        "spon_tokens": earnings.spon_tokens(item.spon),
        "spon_usd": exact_usd(item.spon_usd_micros),
        "unrated_rewards": item.spon_unrated,
        "floor": exact_usd(item.floor_micros),
        "slash_spon": str(int(item.slash_spon)),
        "slash_usd": exact_usd_or_none(item.slash_usd_micros),
        "total": exact_usd(item.total_micros),
    }


@provider_router.get(
    "/earnings",
    response={200: EarningsOut, **ERRORS},
    operation_id="provider_earnings",
    summary="The provider's earnings per UTC day: rental, $SPON rewards, floor top-ups, slashes",
)
def provider_earnings(
    request: HttpRequest,
    days: int = Query(earnings.DEFAULT_DAYS, ge=1, le=EARNINGS_MAX_DAYS, description="Days ending today (UTC), 1–90"),
    node: int | None = Query(None, ge=1, le=2**62, description="One node of yours (default: all)"),
):
    """/provider/earnings/ as JSON (providers.earnings.earnings_days): what each day holds is
    documented there. Not a provider: 403; another provider's node: 404; a bad `days`: 422."""
    profile = _profile(request)
    node_row = services.get_node_for_provider(provider=profile, node_id=node) if node is not None else None
    today = clock.now().astimezone(UTC).date()
    report = earnings.earnings_days(provider=profile, days=days, today=today, node=node_row)
    return {
        "days": days,
        "first": report.first.isoformat(),
        "last": report.last.isoformat(),
        "node_id": node_row.id if node_row is not None else None,
        "slash_rate": report.slash_rate_text or None,
        "slash_rate_at": report.slash_rate_at,
        "no_rate_reason": report.no_rate_reason,
        "totals": _earnings_day(report.totals),
        "items": [_earnings_day(item) for item in report.days],
    }


# --- Prices, payouts, slashes and appeals (the pages' actions as routes) ---------------------------

provider_router.add_router("", "providers.provider_actions_api.router")
