"""/api/v1/deployments: create (YAML or JSON spec), list, detail, close, re-deploy (a pinned one,
unpinned), logs, events, match proof, the spec's JSON Schema and a validate-only call for editors.
Session or API key auth.

Thin: parse, call one service (marketplace.deployments.services, marketplace.matching.services), shape the output.
Spec problems are 422 with `extra.errors` = [{field, message, line}]; too little credit is 402 with
`extra.top_up_url`; another user's deployment is 404.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpRequest
from ninja import Path, Query, Router, Status
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from accounts.api_keys import api_key_spend_reserve
from accounts.auth import api_auth
from accounts.models import User
from billing.selectors import user_balances
from billing.statements import decode_cursor, encode_cursor
from core.money import exact_usd, exact_usd_or_none
from core.schemas import ERRORS, ErrorOut
from marketplace.deployments import services as deployments
from marketplace.deployments.selectors import (
    MAX_ID,
    deployment_cost_so_far,
    deployment_costs,
    deployment_lease,
    deployment_log_lines,
    deployment_match_summary,
    leases_by_deployment,
)
from marketplace.deployments.spec import MAX_SPEC_BYTES, SpecError, spec_json_schema, spec_json_within_budget
from marketplace.matching import proof as match_proofs
from marketplace.models import Deployment, DeploymentStatus, Lease, LeaseStatus, MatchRecord

router = Router(tags=["deployments"], auth=api_auth)

DeploymentId = Path(..., ge=1, le=MAX_ID, description="The deployment's id")


def _user(request: HttpRequest) -> User:
    return request.auth  # type: ignore[attr-defined, return-value]


def _deployment(request: HttpRequest, deployment_id: int) -> Deployment:
    return deployments.get_deployment_for_user(_user(request), deployment_id)


# --- Schemas -----------------------------------------------------------------------------------


class SpecIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: StrictStr | dict[str, Any] = Field(
        description="The deployment spec: ICL v2 YAML text, or the same document as a JSON object "
        "(GET /api/v1/deployments/spec-schema)",
    )

    @field_validator("spec", mode="before")
    @classmethod
    def _text_or_object(cls, value: Any) -> Any:
        # One plain message instead of one per member of the union (spec.str, spec.dict[str,any]).
        if not isinstance(value, str | dict):
            kinds = {bool: "a boolean", int: "a number", float: "a number", list: "an array", type(None): "null"}
            kind = kinds.get(type(value), "another type")
            raise ValueError(f"must be the spec as YAML text (a string) or as a JSON object, not {kind}")
        return value

    @field_validator("spec")
    @classmethod
    def _bounded(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, dict) and not spec_json_within_budget(value):
            return value  # too deep or too many values to measure: the spec's own check says so
        size = len(value.encode()) if isinstance(value, str) else len(json.dumps(value, default=str).encode())
        if size > MAX_SPEC_BYTES:
            raise ValueError(f"is larger than {MAX_SPEC_BYTES // 1024} KiB")
        return value


class SpecProblemOut(BaseModel):
    field: str = Field(description="Dotted path, e.g. services.web.resources.gpu.units")
    message: str
    line: int | None = Field(description="Line in the YAML text; null for JSON")


class EstimateOut(BaseModel):
    max_price_per_hour: str = Field(description="USD, exact decimal string: the most charged per hour")
    max_price_per_hour_micros: int
    max_total: str | None = Field(description="USD for the whole duration at the max price; null when open-ended")
    max_total_micros: int | None
    hold: str = Field(description="USD held from your balance now (the first hours at the max price)")
    hold_micros: int
    hold_hours: int


class DeploymentCreatedOut(BaseModel):
    id: int
    status: DeploymentStatus
    estimate: EstimateOut
    url: str = Field(description="The deployment's page")


class RedeployedOut(DeploymentCreatedOut):
    redeployed_from: int = Field(description="The pinned deployment this one replaces (now closed)")


class LeaseOut(BaseModel):
    id: int
    status: str = Field(description="active or closed")
    node_id: int
    node_name: str
    provider: str = Field(description="The provider's display name")
    region: str
    gpu_model: str = Field(description="GPU model slug of the node (cpu-… for CPU-only machines)")
    gpus: int
    cpu_cores: int
    memory_gb: int
    storage_gb: int
    price_per_hour: str = Field(description="USD per hour, locked when matched")
    price_per_hour_micros: int
    agent_state: str = Field(description="What the node's agent last reported: assigned, provisioning, running, …")
    started_at: datetime
    ended_at: datetime | None
    close_reason: str
    node_silent_since: datetime | None = Field(
        description="While the lease runs and its node has stopped responding: the node's last heartbeat "
        "(nothing is charged after it while it is silent); null while the node heartbeats"
    )
    failover_at: datetime | None = Field(
        description="While the node is silent: when the lease fails over (or, pinned or with failover off, the "
        "deployment closes) if the node does not come back; the last heartbeat plus FAILOVER_GRACE_SECONDS"
    )


class CandidateScoreOut(BaseModel):
    node_id: int
    total: str
    factors: dict[str, str] = Field(description="Each factor normalised to [0, 1]")


class CommitmentChainOut(BaseModel):
    chain_id: int = Field(description="EIP-155 id of the chain holding the LeaseRegistry")
    registry: str = Field(description="The LeaseRegistry contract's address")
    lease_id: int = Field(description="The lease; on chain its id is bytes32(uint256(lease_id))")
    tx_hash: str | None = Field(description="The transaction that recorded it; null if another one did")
    block: int | None
    rpc_url: str | None = Field(None, description="The chain's public RPC URL, when the platform knows one")


class MatchSummaryOut(BaseModel):
    order_id: int
    attempt: int = Field(description="1, then one more after each failover")
    winner_node_id: int
    candidate_count: int
    commitment: str = Field(description="SHA-256 of the canonical match document (see match-proof)")
    weights: dict[str, str]
    top: list[CandidateScoreOut]
    proof_url: str
    chain: CommitmentChainOut | None = Field(
        None, description="Where the commitment is recorded on chain (LeaseRegistry); null until it is"
    )


class DeploymentOut(BaseModel):
    id: int
    name: str
    status: DeploymentStatus
    mode: str
    failover: bool
    duration_seconds: int | None
    created_at: datetime
    started_at: datetime | None
    ends_at: datetime | None
    closed_at: datetime | None
    close_reason: str = Field(description="user_closed, expired, insufficient_funds, no_match, … or empty")
    failure_reason: str
    max_price_per_hour: str
    max_price_per_hour_micros: int
    cost_so_far: str = Field(description="USD charged or accrued so far, over every lease")
    cost_so_far_micros: int
    lease: LeaseOut | None = Field(description="The current lease, or the last one when none is active")
    match: MatchSummaryOut | None = Field(description="Why the current node was chosen; null before a match")
    spec: dict[str, Any] = Field(description="The normalised spec")
    url: str


class DeploymentListItemOut(BaseModel):
    id: int
    name: str
    status: DeploymentStatus
    mode: str
    created_at: datetime
    closed_at: datetime | None
    node_id: int | None
    gpu_units: int
    gpu_model: str | None = Field(description="The leased node's model, else the one the spec names")
    price_per_hour: str = Field(description="Locked lease price, or the spec's max price before a match")
    price_per_hour_micros: int
    cost_so_far: str
    cost_so_far_micros: int


class DeploymentPageOut(BaseModel):
    items: list[DeploymentListItemOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class LogLineOut(BaseModel):
    id: int = Field(description="Pass the last one as `after` to poll for newer lines")
    lease_id: int
    at: datetime
    stream: str = Field(description="stdout or stderr")
    line: str


class LogPageOut(BaseModel):
    lines: list[LogLineOut]
    next_after: int | None = Field(description="The `after` for the next poll (the last line's id)")
    more: bool = Field(description="True when more lines are waiting beyond `limit`")


class EventOut(BaseModel):
    id: int
    kind: str = Field(description="created, matched, provisioning, running, node_failed, failover, closed, failed, …")
    at: datetime
    message: str
    lease_id: int | None


class EventListOut(BaseModel):
    items: list[EventOut]


class MatchProofOut(BaseModel):
    order_id: int
    spec_hash: str
    candidates: list[dict[str, Any]] = Field(description="Raw inputs of every scored candidate")
    weights: dict[str, str]
    seed: str
    winner: int
    commitment: str
    algorithm: str
    chain: CommitmentChainOut | None = Field(
        None, description="Where the commitment is recorded on chain (for verify_match's check); null until it is"
    )


class ValidateOut(BaseModel):
    valid: bool
    errors: list[SpecProblemOut]
    estimate: EstimateOut | None
    available: str | None = Field(description="Your available credits, USD")
    available_micros: int | None
    enough_credits: bool | None = Field(description="Whether you can place the hold now")


# --- Output builders ---------------------------------------------------------------------------


def _estimate(cost: dict[str, Any]) -> dict[str, Any]:
    total = cost["max_total_micros"]
    return {
        "max_price_per_hour": exact_usd(cost["max_price_per_hour_micros"]),
        "max_price_per_hour_micros": cost["max_price_per_hour_micros"],
        "max_total": exact_usd_or_none(total),
        "max_total_micros": total,
        "hold": exact_usd(cost["hold_micros"]),
        "hold_micros": cost["hold_micros"],
        "hold_hours": cost["hold_hours"],
    }


def _lease(lease: Lease) -> dict[str, Any]:
    node = lease.node
    return {
        "id": lease.id,
        "status": lease.status,
        "node_id": node.id,
        "node_name": node.name,
        "provider": node.provider.display_name,
        "region": node.region_id,
        "gpu_model": node.gpu_model_id,
        "gpus": lease.gpus,
        "cpu_cores": lease.cpu_cores,
        "memory_gb": lease.memory_gb,
        "storage_gb": lease.storage_gb,
        "price_per_hour": exact_usd(lease.price_per_hour_micros),
        "price_per_hour_micros": lease.price_per_hour_micros,
        "agent_state": lease.agent_state,
        "started_at": lease.started_at,
        "ended_at": lease.ended_at,
        "close_reason": lease.close_reason,
        **_silence(lease),
    }


def _silence(lease: Lease) -> dict[str, datetime | None]:
    failover_at = deployments.node_failover_at(lease.node) if lease.status == LeaseStatus.ACTIVE else None
    return {"node_silent_since": lease.node.last_seen_at if failover_at else None, "failover_at": failover_at}


def _proof_url(request: HttpRequest, deployment_id: int) -> str:
    return request.build_absolute_uri(f"/api/v1/deployments/{deployment_id}/match-proof")


def _detail(request: HttpRequest, deployment: Deployment) -> dict[str, Any]:
    lease = deployment_lease(deployment)
    summary = deployment_match_summary(deployment)
    cost = deployment_cost_so_far(deployment)
    match = None
    if summary is not None:
        match = {
            **{key: summary[key] for key in ("order_id", "attempt", "winner_node_id", "candidate_count", "commitment")},
            "weights": summary["weights"],
            "top": summary["top"],
            "proof_url": _proof_url(request, deployment.id),
            "chain": summary["chain"],
        }
    return {
        "id": deployment.id,
        "name": deployment.name,
        "status": deployment.status,
        "mode": deployment.mode,
        "failover": deployment.failover,
        "duration_seconds": deployment.duration_seconds,
        "created_at": deployment.created_at,
        "started_at": deployment.started_at,
        "ends_at": deployment.ends_at,
        "closed_at": deployment.closed_at,
        "close_reason": deployment.close_reason,
        "failure_reason": deployment.failure_reason,
        "max_price_per_hour": exact_usd(deployment.max_price_per_hour_micros),
        "max_price_per_hour_micros": deployment.max_price_per_hour_micros,
        "cost_so_far": exact_usd(cost),
        "cost_so_far_micros": cost,
        "lease": _lease(lease) if lease else None,
        "match": match,
        "spec": deployment.spec,
        "url": request.build_absolute_uri(f"/deployments/{deployment.id}/"),
    }


# --- Operations (fixed paths before /{deployment_id}) ------------------------------------------


@router.get(
    "/spec-schema",
    auth=None,
    response={200: dict[str, Any]},
    operation_id="deployments_spec_schema",
    summary="The deployment spec's JSON Schema",
)
def spec_schema(request: HttpRequest):
    """The JSON form of the spec as a JSON Schema (draft 2020-12). YAML specs have the same shape."""
    return spec_json_schema()


@router.post(
    "/validate",
    response={200: ValidateOut, **ERRORS},
    operation_id="deployments_validate",
    summary="Validate a spec and estimate its cost, without creating anything",
)
def validate(request: HttpRequest, body: SpecIn):
    """Always 200 for a well-formed request: `valid` says whether the spec is; `errors` name the
    field and, for YAML, the line. Nothing is held or created."""
    try:
        spec = deployments.spec_from_source(body.spec)
    except SpecError as exc:
        return {
            "valid": False,
            "errors": exc.errors,
            "estimate": None,
            "available": None,
            "available_micros": None,
            "enough_credits": None,
        }
    cost = deployments.estimate(spec)
    balances = user_balances(user=_user(request))
    return {
        "valid": True,
        "errors": [],
        "estimate": _estimate(cost),
        "available": exact_usd(balances.available),
        "available_micros": balances.available,
        "enough_credits": balances.can_hold(cost["hold_micros"]),
    }


@router.post(
    "",
    response={201: DeploymentCreatedOut, 402: ErrorOut, **ERRORS},
    operation_id="deployments_create",
    summary="Create a deployment",
)
def create(request: HttpRequest, body: SpecIn):
    """Validates the spec, holds the worst case for its first hours and opens an order; matching
    runs in the background. 422: the spec's problems in `extra.errors`; 402: not enough credits
    (`extra.top_up_url`)."""
    deployment = deployments.deployment_create(user=_user(request), source=body.spec)
    spec = deployments.spec_from_source(body.spec)
    return Status(
        201,
        {
            "id": deployment.id,
            "status": deployment.status,
            "estimate": _estimate(deployments.estimate(spec)),
            "url": request.build_absolute_uri(f"/deployments/{deployment.id}/"),
        },
    )


@router.get(
    "",
    response={200: DeploymentPageOut, **ERRORS},
    operation_id="deployments_list",
    summary="Your deployments",
)
def deployment_list(
    request: HttpRequest,
    status: Literal["pending", "matched", "provisioning", "running", "closed", "failed"] | None = Query(
        None, description="Only deployments in this state"
    ),
    limit: int = Query(20, ge=1, le=100, description="Items per page, at most 100"),
    cursor: str | None = Query(None, max_length=200, description="next_cursor from the previous page"),
):
    """Newest first, by cursor."""
    queryset = Deployment.objects.filter(owner=_user(request)).order_by("-created_at", "-id")
    if status is not None:
        queryset = queryset.filter(status=status)
    if cursor:
        created_at, last_id = decode_cursor(cursor)
        queryset = queryset.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=last_id))
    rows = list(queryset[: limit + 1])
    page = rows[:limit]
    next_cursor = encode_cursor({"created_at": page[-1].created_at, "id": page[-1].id}) if len(rows) > limit else None
    ids = [deployment.id for deployment in page]
    leases = leases_by_deployment(ids)
    costs = deployment_costs(ids)
    items = []
    for deployment in page:
        lease = leases.get(deployment.id)
        price = lease.price_per_hour_micros if lease else deployment.max_price_per_hour_micros
        cost = costs[deployment.id]
        models = deployment.spec.get("gpu_models") or []
        items.append(
            {
                "id": deployment.id,
                "name": deployment.name,
                "status": deployment.status,
                "mode": deployment.mode,
                "created_at": deployment.created_at,
                "closed_at": deployment.closed_at,
                "node_id": lease.node_id if lease else None,
                "gpu_units": deployment.spec.get("gpu_units", 0),
                "gpu_model": lease.node.gpu_model_id if lease else (models[0] if models else None),
                "price_per_hour": exact_usd(price),
                "price_per_hour_micros": price,
                "cost_so_far": exact_usd(cost),
                "cost_so_far_micros": cost,
            }
        )
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/{deployment_id}",
    response={200: DeploymentOut, **ERRORS},
    operation_id="deployments_get",
    summary="A deployment: status, lease, cost so far and match summary",
)
def deployment_get(request: HttpRequest, deployment_id: int = DeploymentId):
    return _detail(request, _deployment(request, deployment_id))


@router.post(
    "/{deployment_id}/close",
    response={200: DeploymentOut, **ERRORS},
    operation_id="deployments_close",
    summary="Close a deployment",
)
def close(request: HttpRequest, deployment_id: int = DeploymentId):
    """Stops the workload, settles what it used and releases the rest of the hold. Closing a
    deployment that has ended already changes nothing."""
    deployment = deployments.deployment_close(deployment=_deployment(request, deployment_id))
    return _detail(request, deployment)


@router.post(
    "/{deployment_id}/redeploy",
    response={201: RedeployedOut, 402: ErrorOut, **ERRORS},
    operation_id="deployments_redeploy",
    summary="Re-deploy a pinned deployment on any similar node",
)
def redeploy(request: HttpRequest, deployment_id: int = DeploymentId):
    """For a deployment pinned to one node (typically after that node failed): a new deployment with
    the same spec less the pin (the node's GPU model, the resources and the price cap stay), answered
    as POST /deployments answers. The old deployment is closed first if it still runs, in the same
    transaction: when the new one is refused, the old one is left as it was. 409: the deployment is
    not pinned, or you have too many active deployments; 402: not enough credits (`extra.top_up_url`);
    422: the old spec is no longer valid (`extra.errors`). With an API key that has a daily spend
    cap, the new hold counts against it as for POST /deployments."""
    deployment = _deployment(request, deployment_id)
    with transaction.atomic():  # a key over its cap undoes the re-deploy, and the close of the old one
        new = deployments.deployment_redeploy(user=_user(request), deployment=deployment)
        cost = deployments.estimate(deployments.spec_from_source(new.spec_source))
        _count_against_spend_cap(request, cost["hold_micros"])
    return Status(
        201,
        {
            "id": new.id,
            "status": new.status,
            "estimate": _estimate(cost),
            "url": request.build_absolute_uri(f"/deployments/{new.id}/"),
            "redeployed_from": deployment.id,
        },
    )


def _count_against_spend_cap(request: HttpRequest, hold_micros: int) -> None:
    """An API key's daily spend cap counts the holds of the deployments it starts. accounts.auth
    counts POST /deployments before the operation (its estimator is registered for that one path);
    a re-deploy counts here, in the transaction that creates the deployment, so a refusal (403)
    leaves nothing created and nothing counted."""
    api_key = getattr(request, "api_key", None)
    if api_key is not None and api_key.daily_spend_cap is not None and hold_micros:
        api_key_spend_reserve(api_key_id=api_key.id, amount=hold_micros)


@router.get(
    "/{deployment_id}/logs",
    response={200: LogPageOut, **ERRORS},
    operation_id="deployments_logs",
    summary="The workload's log lines",
)
def logs(
    request: HttpRequest,
    deployment_id: int = DeploymentId,
    after: int | None = Query(None, ge=0, le=MAX_ID, description="Only lines after this line id (for polling)"),
    limit: int = Query(500, ge=1, le=1000, description="Lines per call, at most 1,000"),
    tail: int | None = Query(
        None, ge=1, le=1000, description="Only the last N lines (then poll with `after` = `next_after`)"
    ),
):
    """Oldest first across every lease of the deployment. Poll with `after` = the last `next_after`;
    `tail` = N gives the last N lines instead (`after` is then ignored)."""
    deployment = _deployment(request, deployment_id)
    if tail is not None:
        lines, more = deployment_log_lines(deployment, limit=tail, tail=True), False
    else:
        lines = deployment_log_lines(deployment, after=after or 0, limit=limit + 1)
        more = len(lines) > limit
        lines = lines[:limit]
    return {
        "lines": [
            {"id": line.id, "lease_id": line.lease_id, "at": line.at, "stream": line.stream, "line": line.line}
            for line in lines
        ],
        "next_after": lines[-1].id if lines else after,
        "more": more,
    }


@router.get(
    "/{deployment_id}/events",
    response={200: EventListOut, **ERRORS},
    operation_id="deployments_events",
    summary="The deployment's timeline",
)
def events(request: HttpRequest, deployment_id: int = DeploymentId):
    deployment = _deployment(request, deployment_id)
    return {
        "items": [
            {"id": event.id, "kind": event.kind, "at": event.at, "message": event.message, "lease_id": event.lease_id}
            for event in deployment.events.order_by("at", "id")
        ]
    }


@router.get(
    "/{deployment_id}/match-proof",
    response={200: MatchProofOut, **ERRORS},
    operation_id="deployments_match_proof",
    summary="The inputs of the match, to recompute the winner and the commitment",
)
def match_proof(
    request: HttpRequest,
    deployment_id: int = DeploymentId,
    attempt: int | None = Query(None, ge=1, le=10_000, description="An earlier placement; default: the latest"),
):
    """Check it with `spheron_sdk.matching.verify_match(proof)`. 404 until the deployment is matched."""
    deployment = _deployment(request, deployment_id)
    records = MatchRecord.objects.filter(order__deployment=deployment).select_related("order__deployment")
    if attempt is not None:
        records = records.filter(order__attempt=attempt)
    record = records.order_by("-order__attempt").first()
    if record is None:
        raise Http404("This deployment has not been matched to a node yet.")
    return match_proofs.match_proof(record)
