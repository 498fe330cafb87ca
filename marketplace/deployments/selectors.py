"""Deployments reads shared by the pages (views) and the API: a deployment's lease, the latest lease
of many deployments, what deployments cost so far, why this node (the last match), the log lines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import F, Q
from spheron_sdk.onchain import lease_key

from billing.usage import meter_accrued
from core import clock
from marketplace.deployments.commitments import lease_commitment_chain
from marketplace.models import Deployment, Lease, LeaseLogLine, MatchRecord

MAX_ID = 2**63 - 1  # larger ids cannot be in the database (and SQLite cannot even compare them)
LOG_BATCH = 1000  # lines one poll adds at most


def deployment_lease(deployment: Deployment) -> Lease | None:
    """The active lease, else the last one (a deployment has at most one active lease)."""
    return (
        Lease.objects.filter(deployment=deployment)
        .select_related("node__provider", "node__region", "node__gpu_model")
        .order_by("-id")
        .first()
    )


def leases_by_deployment(deployment_ids: list[int]) -> dict[int, Lease]:
    """The latest lease of each deployment, in one query."""
    latest: dict[int, Lease] = {}
    for lease in (
        Lease.objects.filter(deployment_id__in=deployment_ids)
        .select_related("node__provider", "node__gpu_model")
        .order_by("-id")
    ):
        latest.setdefault(lease.deployment_id, lease)
    return latest


def deployment_costs(deployment_ids: list[int]) -> dict[int, int]:
    """What each deployment's leases cost so far (micro-USD), as their meters count it, in one
    query for any number of deployments: a closed meter counts what it charged; an open one what
    it accrued, never less than what a settlement already charged (a meter paused while its node
    is silent stops at the last heartbeat, as the settlements and the failover charge it). A lease
    without a meter counts nothing; every id asked for is in the answer."""
    costs = dict.fromkeys(deployment_ids, 0)
    now = clock.now()
    for lease in Lease.objects.filter(deployment_id__in=deployment_ids, meter__isnull=False).select_related("meter"):
        meter = lease.meter
        if meter.closed_at:
            costs[lease.deployment_id] += meter.charged
        else:
            costs[lease.deployment_id] += max(meter.charged, meter_accrued(meter, now=now))
    return costs


def deployment_cost_so_far(deployment: Deployment) -> int:
    """What the deployment's leases cost so far (micro-USD): `deployment_costs` for one."""
    return deployment_costs([deployment.id])[deployment.id]


def deployment_log_lines(
    deployment: Deployment, *, after: int = 0, limit: int = LOG_BATCH, tail: bool = False
) -> list[LeaseLogLine]:
    """Log lines of every lease of the deployment, oldest first: those after a line id, or the last
    `limit` (`tail`)."""
    lease_ids = list(Lease.objects.filter(deployment=deployment).values_list("id", flat=True))
    lines = LeaseLogLine.objects.filter(lease_id__in=lease_ids)
    if tail:
        return list(reversed(lines.order_by("-id")[:limit]))
    return list(lines.filter(id__gt=after).order_by("id")[:limit])


def deployment_match_summary(deployment: Deployment) -> dict[str, Any] | None:
    """Why this node: the deployment's last match (its order, the winner, the top five scores, the
    weights and the commitment), or None before any."""
    record = (
        MatchRecord.objects.filter(order__deployment=deployment).select_related("order").order_by("-created_at").first()
    )
    if record is None:
        return None
    lease = Lease.objects.filter(order_id=record.order_id).select_related("commitment_tx__chain").first()
    chain = lease_commitment_chain(lease)
    if chain is not None:
        chain["lease_key"] = "0x" + lease_key(lease.id).hex()  # the page shows the id as the contract sees it
    return {
        "order_id": record.order_id,
        "attempt": record.order.attempt,
        "winner_node_id": record.winner_node_id,
        "candidate_count": record.candidate_count,
        "commitment": record.commitment,
        "top": record.scores[:5],
        "weights": record.weights,
        "chain": chain,
    }


def era_lease_spans(node_ids: list[int], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """providers.hooks' era leases: the leases that ran on these nodes within [start, end), each
    clipped to it (a running lease ends at `end`), with the price and fee its meter locked. Reads
    the ids' range (no list of thousands of ids to send), the leases of other nodes skipped."""
    wanted = set(node_ids)
    if not wanted:
        return []
    rows = (
        Lease.objects.filter(node_id__gte=min(wanted), node_id__lte=max(wanted), started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .order_by("node_id", "started_at", "id")
        .values_list("node_id", "id", "started_at", "ended_at", "gpus", "cpu_cores", "price_per_hour_micros")
        .annotate(fee_rate=F("meter__fee_rate"))
    )
    return [
        {
            "node_id": node_id,
            "id": lease_id,
            "start": max(started_at, start),
            "end": min(ended_at or end, end),
            "gpus": gpus,
            "cpu_cores": cpu_cores,
            "price_per_hour_micros": price,
            "fee_rate": fee_rate if fee_rate is not None else Decimal(0),
        }
        for node_id, lease_id, started_at, ended_at, gpus, cpu_cores, price, fee_rate in rows
        if node_id in wanted
    ]
