"""Deployments: create (spec, estimate, hold, order), matching the open orders (marketplace.matching
decides the placements; this module claims the orders and starts the leases), leases, agent
events, close, expiry, failover.

Billing: a deployment holds funds for its duration (at most DEPLOYMENT_HOLD_HOURS up front) at its
max price while it looks for a node. A match swaps that hold for a usage meter at the lease's
locked price (billing.usage); the meter accrues per second and is settled hourly. Closing settles
and releases the rest. A failed node is not charged past its last good heartbeat: while it is
silent its leases' meters are paused there (a settlement meanwhile charges nothing after it), and
resumed without the silence if it comes back within the grace.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.http import Http404
from django.urls import reverse

from accounts.models import User
from billing import hooks as billing_hooks
from billing.models import Hold, UsageMeter
from billing.references import Reference as BillingReference
from billing.references import register_reference_describer
from billing.selectors import user_balances
from billing.services import hold_place, hold_release
from billing.usage import (
    MeterSwap,
    fee_rate_for,
    meter_close,
    meter_open,
    meter_pause,
    meter_resume,
    meters_open_swapping,
)
from core import clock
from core.db import update_by_id
from core.errors import ApplicationError
from core.money import format_usd
from marketplace.deployments.dispatch import enqueue
from marketplace.deployments.spec import Spec, spec_parse
from marketplace.matching import services as matchmaker
from marketplace.matching.candidates import gpu_model_name
from marketplace.models import (
    ACTIVE_DEPLOYMENT_STATUSES,
    CloseReason,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    Lease,
    LeaseLogLine,
    LeaseStatus,
    MatchRecord,
    Order,
    OrderStatus,
    close_reason_label,
)
from providers import capacity
from providers import hooks as provider_hooks
from providers.models import AgentState, GpuModel, Node, NodeStatus, Region

logger = logging.getLogger(__name__)

MAX_ACTIVE_DEPLOYMENTS = 50
LOG_LINES_KEPT = 20_000


def _event(deployment: Deployment, kind: str, message: str, *, at: datetime, lease: Lease | None = None) -> None:
    DeploymentEvent.objects.create(deployment=deployment, lease=lease, kind=kind, at=at, message=message[:2000])


def spec_from_source(source: str | dict) -> Spec:
    return spec_parse(
        source,
        known_models=set(GpuModel.objects.values_list("slug", flat=True)),
        known_regions=set(Region.objects.values_list("code", flat=True)),
    )


def hold_hours(spec: Spec | dict) -> int:
    duration = spec.duration_seconds if isinstance(spec, Spec) else spec.get("duration_seconds")
    if duration is None:
        return settings.DEPLOYMENT_HOLD_HOURS
    return max(1, min(settings.DEPLOYMENT_HOLD_HOURS, -(-duration // 3600)))


def estimate(spec: Spec) -> dict[str, Any]:
    """The worst case the renter can be charged, and what is held now."""
    hourly = spec.max_price_per_hour_micros
    total = None if spec.duration_seconds is None else -(-hourly * spec.duration_seconds // 3600)
    held = hourly * hold_hours(spec)
    return {
        "max_price_per_hour_micros": hourly,
        "max_total_micros": total,
        "hold_micros": held,
        "hold_hours": hold_hours(spec),
        "max_price_per_hour": format_usd(hourly, places=2),
        "max_total": format_usd(total, places=2) if total is not None else None,
        "hold": format_usd(held, places=2),
    }


def get_deployment_for_user(user: User, deployment_id: int) -> Deployment:
    if not 0 < deployment_id < 2**63:
        raise Http404("No such deployment.")
    deployment = Deployment.objects.filter(owner=user, id=deployment_id).first()
    if deployment is None:
        raise Http404("No such deployment.")
    return deployment


def _name(spec: Spec) -> str:
    first = spec.services[0]
    return f"{first.name} ({first.image})"[:120]


def deployment_create(*, user: User, source: str | dict) -> Deployment:
    """Validate, hold the worst case, open an order and enqueue matching on commit."""
    spec = spec_from_source(source)
    if spec.node:
        node = Node.objects.filter(id=spec.node).select_related("gpu_model").first()
        if node is None or not node.is_listed:
            raise ApplicationError(
                f"Node {spec.node} is not available to rent right now.", {"field": "deployment.attributes.node"}
            )
        if node.mode != spec.mode:
            raise ApplicationError(
                f"Node {spec.node} is a {node.mode}-mode node; the spec asks for {spec.mode} mode.",
                {"field": "deployment.mode"},
            )
    cost = estimate(spec)
    if Deployment.objects.filter(owner=user, status__in=ACTIVE_DEPLOYMENT_STATUSES).count() >= MAX_ACTIVE_DEPLOYMENTS:
        raise ApplicationError(f"You have {MAX_ACTIVE_DEPLOYMENTS} active deployments, the most allowed.", status=409)
    balances = user_balances(user=user)
    if not balances.can_hold(cost["hold_micros"]):
        raise _owes_error(balances.debt) if balances.debt else _short_error(cost, balances.available)
    now = clock.now()
    text = source if isinstance(source, str) else json.dumps(source, indent=2, sort_keys=True)
    with transaction.atomic():
        deployment = Deployment.objects.create(
            owner=user,
            name=_name(spec),
            spec_source=text,
            spec=spec.canonical(),
            spec_hash=spec.hash,
            mode=spec.mode,
            failover=spec.failover,
            duration_seconds=spec.duration_seconds,
            max_price_per_hour_micros=spec.max_price_per_hour_micros,
            created_at=now,
        )
        try:
            deployment.hold = hold_place(
                user=user, amount=cost["hold_micros"], reference_type="deployment", reference_id=f"{deployment.id}:1"
            )
        except ApplicationError as exc:
            # A parallel create took the credit (or a reversal made debt) after the check above:
            # the ledger refuses under its lock; answer as the check would have (402), not 409.
            if "debt_micros" in exc.extra:
                raise _owes_error(exc.extra["debt_micros"]) from None
            if exc.extra.get("account") == "user_available":
                raise _short_error(cost, exc.extra.get("balance", 0)) from None
            raise
        deployment.save(update_fields=["hold"])
        _order_open(deployment, attempt=1, excluded=[], now=now)
        _event(deployment, "created", f"Submitted; holding {cost['hold']} for {cost['hold_hours']} h.", at=now)
    return deployment


def _owes_error(debt: int) -> ApplicationError:
    return ApplicationError(
        f"Your account owes {format_usd(debt, places=2)}. Top up to clear it first.",
        {"top_up_url": reverse("billing"), "debt_micros": debt},
        status=402,
    )


def _short_error(cost: dict[str, Any], available: int) -> ApplicationError:
    return ApplicationError(
        f"Not enough credits: this deployment holds {cost['hold']} ({cost['hold_hours']} h at up to "
        f"{cost['max_price_per_hour']}/h) and you have {format_usd(available, places=2)}. Top up first.",
        {"top_up_url": reverse("billing"), "needed_micros": cost["hold_micros"], "available_micros": available},
        status=402,
    )


def _order_open(deployment: Deployment, *, attempt: int, excluded: list[int], now: datetime) -> Order:
    order = Order.objects.create(
        deployment=deployment,
        attempt=attempt,
        excluded_node_ids=excluded,
        created_at=now,
        deadline_at=now + timedelta(seconds=settings.MATCH_TIMEOUT_SECONDS),
    )
    transaction.on_commit(kick)
    return order


@dataclass(frozen=True)
class LeaseStart:
    """One match to start: the order, where, for what share and at what price, and its proof."""

    order: Order
    placement: matchmaker.Placement
    request: Any
    price: int
    record: MatchRecord

    @property
    def swaps_hold(self) -> bool:
        """A paid lease of a deployment with a hold: the hold becomes the meter's (`hold_swaps`)."""
        return self.price > 0 and self.order.deployment.hold_id is not None


def leases_start(starts: list[LeaseStart], *, now: datetime) -> list[Lease]:
    """Start the leases of a batch of matches, inside the matching transaction (`match_orders`), with
    the orders and their deployments locked and the nodes' capacity reserved. Each deployment's
    worst-case hold becomes its lease meter's hold at the locked price in one ledger posting
    (billing's `hold_swaps`); a free lease has no meter and its deployment's hold is released.
    The rows are written with a fixed number of queries (one INSERT or UPDATE per table) whatever
    the batch's size; one match is a batch of one. A refusal from billing (which cannot happen
    while the deployments are locked: see `hold_swaps`) is raised and the caller's transaction
    rolls back."""
    if not starts:
        return []
    leases = Lease.objects.bulk_create(
        [
            Lease(
                deployment=s.order.deployment,
                order=s.order,
                node_id=s.placement.node_id,
                price_per_hour_micros=s.price,
                gpus=s.request.gpu_units,
                cpu_cores=s.request.cpu_cores,
                memory_gb=s.request.memory_gb,
                storage_gb=s.request.storage_gb,
                started_at=now,
            )
            for s in starts
        ]
    )
    swapped = [
        (s, lease) for s, lease in zip(starts, leases, strict=True) if s.price > 0 and s.order.deployment.hold_id
    ]
    meters = meters_open_swapping(
        [
            MeterSwap(
                hold_id=s.order.deployment.hold_id,
                payee_id=s.placement.payee_id,
                price_per_hour=s.price,
                fee_rate=fee_rate_for(s.order.deployment.mode),
                hold_amount=s.price * hold_hours(s.order.deployment.spec),
                reference_type="lease",
                reference_id=str(lease.id),
                started_at=now,
            )
            for s, lease in swapped
        ]
    )
    for meter in meters:
        if isinstance(meter, ApplicationError):
            raise meter
    for (_, lease), meter in zip(swapped, meters, strict=True):
        lease.meter = meter
    for s, lease in zip(starts, leases, strict=True):  # no hold to swap: free, or a deployment without one
        if s.swaps_hold:
            continue
        deployment = s.order.deployment
        if deployment.hold_id is not None:
            hold_release(hold=deployment.hold)
        if s.price > 0:
            lease.meter = meter_open(
                renter=deployment.owner,
                payee=User.objects.get(id=s.placement.payee_id),
                price_per_hour=s.price,
                fee_rate=fee_rate_for(deployment.mode),
                hold_amount=s.price * hold_hours(deployment.spec),
                reference_type="lease",
                reference_id=str(lease.id),
                started_at=now,
            )
    update_by_id(Lease, "meter", {lease.id: lease.meter_id for lease in leases if lease.meter_id})
    Order.objects.filter(id__in=[s.order.id for s in starts]).update(
        status=OrderStatus.MATCHED, matched_at=now, claimed_at=now
    )
    ends = {}
    for s in starts:
        deployment = s.order.deployment
        deployment.status, deployment.hold, deployment.updated_at = DeploymentStatus.MATCHED, None, now
        if deployment.ends_at is None and deployment.duration_seconds:
            deployment.ends_at = now + timedelta(seconds=deployment.duration_seconds)
            ends[deployment.id] = deployment.ends_at
    Deployment.objects.filter(id__in=[s.order.deployment.id for s in starts]).update(
        status=DeploymentStatus.MATCHED, hold=None, updated_at=now
    )
    update_by_id(Deployment, "ends_at", ends)
    DeploymentEvent.objects.bulk_create(
        [
            DeploymentEvent(
                deployment=s.order.deployment,
                lease=lease,
                kind="matched",
                at=now,
                message=_matched_message(s.placement, s.price, s.record)[:2000],
            )
            for s, lease in zip(starts, leases, strict=True)
        ]
    )
    nodes = {s.placement.node_id for s in starts}
    transaction.on_commit(lambda: _assignments_changed_many(nodes))
    simulated = [lease.id for s, lease in zip(starts, leases, strict=True) if s.placement.is_simulated]
    if simulated:
        transaction.on_commit(
            lambda: [enqueue("marketplace.tasks.simulate_demo_lease", lease_id) for lease_id in simulated]
        )
    return leases


def _matched_message(placement: matchmaker.Placement, price: int, record: MatchRecord) -> str:
    count = record.candidate_count
    among = f"best of {count} candidates" if count > 1 else "the only candidate"
    return (
        f"Matched node {placement.node_id} ({gpu_model_name(placement.gpu_model_id)}, "
        f"{placement.region_id}) of "
        f"{placement.provider_name} at {format_usd(price, places=4)}/h, {among}; commitment {record.commitment[:16]}…"
    )


# --- Matching the open orders: claim a batch, the matchmaker decides, the leases start ---------


@dataclass
class MatchOutcome:
    status: str  # matched | waiting | failed | skipped
    lease: Lease | None = None
    reason: str = ""


def match_order(*, order_id: int, now: datetime | None = None) -> MatchOutcome:
    """Match one open order (a batch of one: see `match_orders`). "skipped" when the order is not
    open, or another worker holds it."""
    return match_orders(order_ids=[order_id], now=now).get(order_id, MatchOutcome("skipped"))


def match_orders(
    *,
    order_ids: list[int] | None = None,
    limit: int | None = None,
    now: datetime | None = None,
    on_full: Callable[[], None] | None = None,
) -> dict[int, MatchOutcome]:
    """Match a batch of open orders: `order_ids`, or the `limit` (MATCH_BATCH_SIZE) oldest that are
    due (never tried, or waiting and past their `retry_at`). Safe to run in several workers at once.

    One transaction: the orders and their deployments are claimed with FOR UPDATE SKIP LOCKED (an
    order another worker holds, or whose deployment a close holds, is left to them), candidates
    found in one round trip, each order scored on its own, capacity reserved for all of them with
    one conditional UPDATE (orders whose node was taken meanwhile drop it and try their next best,
    up to MAX_RESERVE_ATTEMPTS rounds), and the matches, leases and ledger postings written with
    one statement per table, all committed together. A worker that dies leaves nothing behind: its
    locks go with its connection and the orders are still open. If a batch of several orders hits
    an error it rolls back and each of its orders is matched on its own, so one bad order cannot
    hold up the others; one that fails on its own waits MATCH_RETRY_SECONDS. `on_full` is called
    when the claim filled the batch (more orders may be due: the caller can start another worker on
    them while this one matches).
    """
    claimed: list[int] = []
    try:
        return _match_batch(order_ids=order_ids, limit=limit, now=now, on_full=on_full, claimed=claimed)
    except (ApplicationError, DatabaseError):
        if len(claimed) < 2:
            raise
        logger.exception("matching a batch of %d orders failed; matching them one at a time", len(claimed))
    outcomes = {}
    for order_id in claimed:
        try:
            outcomes.update(_match_batch(order_ids=[order_id], limit=None, now=now, on_full=None, claimed=[]))
        except (ApplicationError, DatabaseError):
            # It stays open, and waits like an order without a node: the next batch (a task loops
            # while its batches are full) must not claim it again at once.
            logger.exception("matching order %s failed; it stays open and waits", order_id)
            retry_at = (now or clock.now()) + timedelta(seconds=settings.MATCH_RETRY_SECONDS)
            Order.objects.filter(id=order_id, status=OrderStatus.OPEN).update(retry_at=retry_at)
    return outcomes


def _claim(order_ids: list[int] | None, limit: int | None, now: datetime) -> list[Order]:
    """Lock the batch's orders, then their deployments, both with SKIP LOCKED. Two steps: the
    orders alone are picked through the open-orders index, and only the chosen few are joined (one
    query joining every open order to its deployment and hold before the LIMIT cost PostgreSQL
    1.7 ms per batch when its statistics said there were few open orders). An order whose
    deployment a close holds stays locked by this transaction until it ends, untouched."""
    orders = Order.objects.select_for_update(skip_locked=True).filter(status=OrderStatus.OPEN)
    if order_ids is not None:
        orders = orders.filter(id__in=order_ids)
    else:
        due = orders.filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now)).order_by("created_at", "id")
        orders = due[: limit or settings.MATCH_BATCH_SIZE]
    ids = list(orders.values_list("id", flat=True))
    if not ids:
        return []
    return list(
        Order.objects.select_related("deployment", "deployment__hold")
        .select_for_update(skip_locked=True, of=("self", "deployment"))
        .filter(id__in=ids)
        .order_by("created_at", "id")
    )


def _match_batch(
    *,
    order_ids: list[int] | None,
    limit: int | None,
    now: datetime | None,
    on_full: Callable[[], None] | None,
    claimed: list[int],
) -> dict[int, MatchOutcome]:
    now = now or clock.now()
    with transaction.atomic():
        orders = _claim(order_ids, limit, now)
        claimed += [order.id for order in orders]
        if not orders:
            return {}
        if on_full is not None and len(orders) == (limit or settings.MATCH_BATCH_SIZE):
            on_full()
        decisions = matchmaker.decide(orders, now=now)

        outcomes: dict[int, MatchOutcome] = {}
        won = [d for d in decisions if d.placement is not None]
        if won:
            starts = [
                LeaseStart(order=d.order, placement=d.placement, request=d.request, price=d.price, record=d.record)
                for d in won
            ]
            for decision, lease in zip(won, leases_start(starts, now=now), strict=True):
                outcomes[decision.order.id] = MatchOutcome("matched", lease=lease)
        waiting = []
        for decision in decisions:
            if decision.placement is not None:
                continue
            if decision.failed_reason:
                order_fail(order=decision.order, reason=decision.failed_reason, now=now)
                outcomes[decision.order.id] = MatchOutcome("failed", reason=decision.failed_reason)
            else:
                waiting.append(decision.order.id)
                outcomes[decision.order.id] = MatchOutcome("waiting")
        if waiting:
            Order.objects.filter(id__in=waiting).update(retry_at=now + timedelta(seconds=settings.MATCH_RETRY_SECONDS))
        return outcomes


KICK_KEY = "matchmaker:kick"
KICK_SECONDS = 30


def kick() -> None:
    """Have a worker match the due orders: queue the `match_order` task unless one is queued and has
    not started yet (a cache key, cleared by the task as it starts, before it claims: an order
    committed after that queues a new task). Called on commit of every new order."""
    if cache.add(KICK_KEY, 1, timeout=KICK_SECONDS):
        enqueue("marketplace.tasks.match_order")


def kick_clear() -> None:
    cache.delete(KICK_KEY)


def match_due_orders(
    *, now: datetime | None = None, on_full: Callable[[], None] | None = None
) -> dict[int, MatchOutcome]:
    """One batch of the orders that are due (see `match_orders`)."""
    return match_orders(limit=settings.MATCH_BATCH_SIZE, now=now, on_full=on_full)


STUCK_CLAIM = timedelta(minutes=5)  # an order "matching" longer than this lost its worker
SWEEP_LIMIT = 500  # orders one sweep tries at most


def open_orders_sweep(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> int:
    """Orders still open and due (waiting for capacity past their retry time, or enqueued while no
    worker ran) are matched in batches, at most `limit` per run; orders left "matching" by a worker
    that died (or of an older version) are reopened first. Returns the number of orders tried."""
    now = now or clock.now()
    # Reopen by when a worker took it, not by its age: an order that waited for capacity is not stuck.
    Order.objects.filter(status=OrderStatus.MATCHING, claimed_at__lt=now - STUCK_CLAIM).update(status=OrderStatus.OPEN)
    done = 0
    while done < limit:
        tried = len(match_due_orders())
        done += tried
        if tried < settings.MATCH_BATCH_SIZE:
            break
    return done


def order_fail(*, order: Order, reason: str, now: datetime) -> None:
    with transaction.atomic():
        Order.objects.filter(id=order.id).update(status=OrderStatus.FAILED, failure_reason=reason)
        deployment = Deployment.objects.select_for_update().get(id=order.deployment_id)
        if deployment.hold_id:
            hold_release(hold=deployment.hold)
        deployment.status = DeploymentStatus.FAILED
        deployment.close_reason = CloseReason.NO_MATCH
        deployment.failure_reason = reason
        deployment.closed_at = now
        deployment.hold = None
        deployment.save(update_fields=["status", "close_reason", "failure_reason", "closed_at", "hold", "updated_at"])
        _event(
            deployment,
            "failed",
            f"No match in {settings.MATCH_TIMEOUT_SECONDS} s: {reason} The hold was released.",
            at=now,
        )


def _release_capacity(lease: Lease) -> None:
    """Give the lease's share back to its node: once (the first caller wins), and only when the
    workload no longer runs there (see `_lease_end`)."""
    if not Lease.objects.filter(id=lease.id, capacity_released_at__isnull=True).update(
        capacity_released_at=clock.now()
    ):
        return
    capacity.release(
        node_id=lease.node_id,
        gpus=lease.gpus,
        cpu_cores=lease.cpu_cores,
        memory_gb=lease.memory_gb,
        storage_gb=lease.storage_gb,
    )


def _lease_end(lease: Lease, *, reason: str, now: datetime, charge_until: datetime | None = None) -> None:
    """Close a lease: settle the meter (up to `charge_until`). The node's capacity is freed only
    once nothing runs there any more: now if the workload already ended (or the node is a demo
    node), else when the agent reports the stop or no longer reports the lease in a heartbeat
    (`leases_gone_from_node`), or LEASE_STOP_TIMEOUT_SECONDS after the end
    (`leases_release_stale_capacity`). Until then a new lease cannot start beside the old one."""
    if lease.status != LeaseStatus.ACTIVE:
        return
    if lease.meter_id:
        label = close_reason_label(reason)
        meter_close(meter=lease.meter, now=charge_until or now, reason=label[:1].lower() + label[1:])
    if lease.node.is_simulated:  # a demo node has no agent to confirm the stop: it stops with the lease
        lease.agent_state = AgentState.STOPPED
    Lease.objects.filter(id=lease.id).update(
        status=LeaseStatus.CLOSED, ended_at=now, close_reason=reason, agent_state=lease.agent_state
    )
    lease.status, lease.ended_at, lease.close_reason = LeaseStatus.CLOSED, now, reason
    if lease.agent_state in Lease.AGENT_DONE:
        _release_capacity(lease)
    transaction.on_commit(lambda: _assignments_changed(lease.node_id))


def deployment_close(*, deployment: Deployment, reason: str = CloseReason.USER_CLOSED, message: str = "") -> Deployment:
    """Close a deployment (idempotent): stop its lease, settle, refund what is left of the hold."""
    now = clock.now()
    with transaction.atomic():
        # Its active leases first, then the deployment: the order the agent's lease events take them
        # in (`lease_events` locks the lease, then the deployment, and may close it). Taking the
        # deployment first deadlocked a user's close with the agent's report of the same lease (CI).
        list(
            Lease.objects.select_for_update()
            .filter(deployment_id=deployment.id, status=LeaseStatus.ACTIVE)
            .order_by("id")
            .values_list("id", flat=True)
        )
        deployment = Deployment.objects.select_for_update().get(id=deployment.id)
        if not deployment.is_active:
            return deployment
        for lease in Lease.objects.filter(deployment=deployment, status=LeaseStatus.ACTIVE).select_related(
            "meter", "node"
        ):
            _lease_end(lease, reason=reason, now=now)
        Order.objects.filter(deployment=deployment, status__in=[OrderStatus.OPEN, OrderStatus.MATCHING]).update(
            status=OrderStatus.CANCELLED
        )
        if deployment.hold_id:
            hold_release(hold=Hold.objects.get(id=deployment.hold_id))
            deployment.hold = None
        failed = reason == CloseReason.WORKLOAD_FAILED
        deployment.status = DeploymentStatus.FAILED if failed else DeploymentStatus.CLOSED
        deployment.close_reason = reason
        deployment.closed_at = now
        if failed:
            deployment.failure_reason = message
        deployment.save(update_fields=["status", "close_reason", "closed_at", "hold", "failure_reason", "updated_at"])
        label = close_reason_label(reason)
        _event(deployment, "closed", f"{label}. {message}".strip(), at=now)
    return deployment


# --- The agent side (registered with providers.hooks in apps.ready) ------------------------------


def _assignments_key(node_id: int) -> str:
    return f"node:leases:{node_id}"


def _assignments_changed(node_id: int) -> None:
    cache.delete(_assignments_key(node_id))


def _assignments_changed_many(node_ids: set[int]) -> None:
    cache.delete_many([_assignments_key(node_id) for node_id in node_ids])


# The agent has not started the lease yet, or says it runs it: start it if its report lacks it.
_AGENT_STARTING = (AgentState.ASSIGNED, AgentState.PROVISIONING, AgentState.RUNNING)


def assignments_for_node(
    node_id: int, reported: list[dict[str, Any]], cached: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Start what the node should run and does not report (again after an agent restart); stop what
    it runs that is closed. `cached`: the heartbeat's prefetched cache values (this node's key is
    absent when the cache did not have it)."""
    key = _assignments_key(node_id)
    holding = cached.get(key) if cached is not None else cache.get(key)
    if holding is None:
        # Active leases, and ended ones whose stop the agent has not confirmed (they hold capacity).
        holding = [
            {"lease_id": lease.id, "state": lease.agent_state, "spec": lease.deployment.spec}
            if lease.status == LeaseStatus.ACTIVE
            else {"lease_id": lease.id, "state": lease.agent_state, "ended": True}
            for lease in Lease.objects.filter(node_id=node_id, capacity_released_at__isnull=True).select_related(
                "deployment"
            )
        ]
        cache.set(key, holding, 300)
    active = [lease for lease in holding if not lease.get("ended")]
    running = {item["lease_id"] for item in reported}
    assignments = []
    for lease in active:
        if lease["lease_id"] not in running and lease["state"] in _AGENT_STARTING:
            assignments.append(_start_assignment(lease["lease_id"], lease["spec"]))
    active_ids = {lease["lease_id"] for lease in active}
    for lease_id in running - active_ids:
        assignments.append({"lease_id": lease_id, "action": "stop"})
    # This list was built after those leases ended, so no start was sent for them since: one the
    # agent does not report is not running there.
    gone = [lease["lease_id"] for lease in holding if lease.get("ended") and lease["lease_id"] not in running]
    if gone:
        leases_gone_from_node(node_id=node_id, lease_ids=gone)
    return assignments


def leases_gone_from_node(*, node_id: int, lease_ids: list[int]) -> int:
    """Ended leases the node's agent no longer runs: their capacity goes back to the node."""
    released = 0
    with transaction.atomic():
        for lease in Lease.objects.filter(
            id__in=lease_ids, node_id=node_id, status=LeaseStatus.CLOSED, capacity_released_at__isnull=True
        ):
            _release_capacity(lease)
            if lease.agent_state not in Lease.AGENT_DONE:  # it does not run there: the page says stopped
                Lease.objects.filter(id=lease.id).update(agent_state=AgentState.STOPPED)
            released += 1
    _assignments_changed(node_id)
    return released


def leases_release_stale_capacity(*, now: datetime | None = None) -> int:
    """Ended leases whose stop no agent confirmed within LEASE_STOP_TIMEOUT_SECONDS (a node that
    never came back, an agent that lost it): their capacity goes back to the node."""
    now = now or clock.now()
    cutoff = now - timedelta(seconds=settings.LEASE_STOP_TIMEOUT_SECONDS)
    stale = list(
        Lease.objects.filter(status=LeaseStatus.CLOSED, capacity_released_at__isnull=True, ended_at__lte=cutoff)[:1000]
    )
    for lease in stale:
        with transaction.atomic():
            _release_capacity(lease)
    for node_id in {lease.node_id for lease in stale}:
        _assignments_changed(node_id)
    return len(stale)


def _start_assignment(lease_id: int, spec: dict[str, Any]) -> dict[str, Any]:
    service = spec["services"][0]  # all services share the node; the agent runs the first as the workload
    return {
        "lease_id": lease_id,
        "action": "start",
        "image": service["image"],
        "command": service["command"],
        "args": service["args"],
        "env": service["env"],
        "ports": service["ports"],
        "resources": {
            "cpu_units": spec["cpu_cores"],
            "memory_gb": spec["memory_gb"],
            "storage_gb": spec["storage_gb"],
            "gpu_units": spec["gpu_units"],
        },
    }


def lease_events(node_id: int, lease_id: int, events: list[dict[str, Any]]) -> bool:
    """Store what the agent reports about a lease on its node; False if it is not its lease."""
    now = clock.now()
    with transaction.atomic():
        lease = Lease.objects.select_for_update().filter(id=lease_id, node_id=node_id).first()
        if lease is None:
            return False
        deployment = Deployment.objects.select_for_update().get(id=lease.deployment_id)
        lines = []
        for event in events:
            kind = event["type"]
            if kind == "log":
                lines += [
                    LeaseLogLine(lease=lease, at=now, stream=event.get("stream") or "stdout", line=line)
                    for line in event["lines"]
                ]
                continue
            if lease.status != LeaseStatus.ACTIVE:
                _event(deployment, f"agent_{kind}", event.get("message") or kind, at=now, lease=lease)
                if kind in Lease.AGENT_DONE:  # the agent confirms the stop of an ended lease
                    lease.agent_state = kind
                    if kind == "exited":
                        lease.exit_code = event.get("exit_code")
                    Lease.objects.filter(id=lease.id).update(agent_state=lease.agent_state, exit_code=lease.exit_code)
                    _release_capacity(lease)  # nothing runs there any more
                continue
            if kind == "provisioning":
                lease.agent_state = AgentState.PROVISIONING
                if deployment.status == DeploymentStatus.MATCHED:
                    deployment.status = DeploymentStatus.PROVISIONING
                _event(
                    deployment,
                    "provisioning",
                    event.get("message") or "The node is starting the workload.",
                    at=now,
                    lease=lease,
                )
            elif kind == "running":
                lease.agent_state = AgentState.RUNNING
                deployment.status = DeploymentStatus.RUNNING
                deployment.started_at = deployment.started_at or now
                _event(deployment, "running", "The workload is running.", at=now, lease=lease)
            elif kind == "exited":
                lease.agent_state, lease.exit_code = AgentState.EXITED, event.get("exit_code")
                lease.save(update_fields=["agent_state", "exit_code"])
                deployment.save(update_fields=["status", "started_at", "updated_at"])
                deployment_close(
                    deployment=deployment, reason=CloseReason.EXITED, message=f"Exit code {lease.exit_code}."
                )
                deployment.refresh_from_db()
                lease.refresh_from_db()
            elif kind == "failed":
                lease.agent_state = AgentState.FAILED
                lease.save(update_fields=["agent_state"])
                deployment.save(update_fields=["status", "started_at", "updated_at"])
                deployment_close(
                    deployment=deployment,
                    reason=CloseReason.WORKLOAD_FAILED,
                    message=event.get("message") or "The workload failed.",
                )
                deployment.refresh_from_db()
                lease.refresh_from_db()
            elif kind == "stopped":
                lease.agent_state = AgentState.STOPPED
                _event(
                    deployment,
                    "stopped",
                    event.get("message") or "The agent stopped the workload.",
                    at=now,
                    lease=lease,
                )
        if lines:
            LeaseLogLine.objects.bulk_create(lines)
        if lease.status == LeaseStatus.ACTIVE:
            lease.save(update_fields=["agent_state", "exit_code"])
            deployment.save(update_fields=["status", "started_at", "updated_at"])
    if any(event["type"] != "log" for event in events):
        _assignments_changed(node_id)
    return True


def lease_summaries(node_ids: list[int]) -> dict[int, str]:
    leases = Lease.objects.filter(node_id__in=node_ids, status=LeaseStatus.ACTIVE).select_related("deployment__owner")
    return {lease.node_id: f"#{lease.deployment_id} {lease.deployment.name} ({lease.agent_state})" for lease in leases}


# --- Failover, expiry, insufficient funds ----------------------------------------------------------


def node_went_offline(node_id: int, at: datetime) -> None:
    """providers' offline hook, `at` being the node's last heartbeat: fail its leases over when it
    has been silent FAILOVER_GRACE_SECONDS counted from that heartbeat (a blip is not a failure).
    The node is found silent NODE_OFFLINE_AFTER_SECONDS after it, so part of the grace, or all of it
    (a grace shorter than that), is already over: what is left is waited, or nothing. The fold's
    sweep (`leases_fail_silent_nodes`) does the same should this task be lost.

    Meanwhile nothing is charged after that heartbeat: the leases' meters are paused at it."""
    if not Lease.objects.filter(node_id=node_id, status=LeaseStatus.ACTIVE).exists():
        return
    node_meters_pause(node_id=node_id, at=at)
    remaining = settings.FAILOVER_GRACE_SECONDS - (clock.now() - at).total_seconds()
    if remaining <= 0:
        node_leases_fail(node_id=node_id, last_good=at)
        return
    enqueue("marketplace.tasks.fail_node_leases", node_id, at.isoformat(), countdown=math.ceil(remaining))


def node_meters_pause(*, node_id: int, at: datetime | None = None) -> int:
    """Pause the meters of the node's active leases at its last heartbeat (`at`, or a later one the
    node has had since), if the node is offline. Returns how many were paused.

    The meters are locked before the node's status is read: a heartbeat that brings the node back
    commits either before the read (nothing is paused) or after the pause (its back-online hook
    waits for the meters and resumes them), so a meter is never left paused on a live node."""
    with transaction.atomic():
        meter_ids = list(
            UsageMeter.objects.select_for_update()
            .filter(
                id__in=Lease.objects.filter(node_id=node_id, status=LeaseStatus.ACTIVE).values("meter_id"),
                paused_at__isnull=True,
                closed_at__isnull=True,
            )
            .order_by("id")
            .values_list("id", flat=True)
        )
        if not meter_ids:
            return 0
        node = Node.objects.filter(id=node_id).values_list("status", "last_seen_at").first()
        if node is None or node[0] != NodeStatus.OFFLINE:
            return 0
        since = max(filter(None, [at, node[1]]), default=None)
        if since is None:
            return 0
        for meter_id in meter_ids:
            meter_pause(meter_id=meter_id, at=since)
    return len(meter_ids)


def node_back_online(node_id: int, silent_since: datetime, at: datetime) -> None:
    """providers' back-online hook: a node that was silent heartbeats again before its leases
    failed over, and keeps them. The renter is not charged for the silence: the meters paused at
    the last heartbeat resume (the page showed the cost stopped there: it goes on from there)."""
    for lease in Lease.objects.filter(node_id=node_id, status=LeaseStatus.ACTIVE).select_related("deployment"):
        if lease.meter_id:
            # Paused at `silent_since` by the offline hook (or the fold's sweep): the resume
            # excludes the gap, once (a meter no longer paused is left as it is).
            meter_resume(meter_id=lease.meter_id, at=at)
        gap = int((at - max(silent_since, lease.started_at)).total_seconds())
        if gap <= 0:
            continue
        _event(
            lease.deployment,
            "node_back",
            f"Node {node_id} is back after {gap} s without a heartbeat (since {silent_since:%H:%M:%S} UTC); "
            "the lease goes on, and that time is not charged.",
            at=at,
            lease=lease,
        )
    # Silent again before this hook ran (its offline hook found the meters still paused from the
    # first silence): paused again at the newer last heartbeat.
    node_meters_pause(node_id=node_id)


def leases_fail_silent_nodes(now: datetime | None = None) -> int:
    """providers' fold hook: leases on nodes offline for longer than the grace since their last
    heartbeat fail over now (within one fold of the grace, whatever happened to the scheduled
    check). Returns the number of leases ended."""
    now = now or clock.now()
    # Should an offline hook have been lost, the meters of silent nodes are paused here.
    unpaused = (
        Lease.objects.filter(
            status=LeaseStatus.ACTIVE,
            node__status=NodeStatus.OFFLINE,
            meter__paused_at__isnull=True,
            meter__closed_at__isnull=True,
        )
        .values_list("node_id", flat=True)
        .distinct()
    )
    for node_id in list(unpaused):
        node_meters_pause(node_id=node_id)
    cutoff = now - timedelta(seconds=settings.FAILOVER_GRACE_SECONDS)
    silent = Node.objects.filter(
        status=NodeStatus.OFFLINE,
        last_seen_at__lte=cutoff,
        id__in=Lease.objects.filter(status=LeaseStatus.ACTIVE).values("node_id"),
    ).values_list("id", "last_seen_at")
    failed = sum(node_leases_fail(node_id=node_id, last_good=last_seen) for node_id, last_seen in silent)
    return failed + leases_release_stale_capacity(now=now)


def node_failover_at(node: Node) -> datetime | None:
    """When the leases of an offline node fail over if it does not come back (its last heartbeat
    plus the grace); None for a node that is not offline."""
    if node.status != NodeStatus.OFFLINE or node.last_seen_at is None:
        return None
    return node.last_seen_at + timedelta(seconds=settings.FAILOVER_GRACE_SECONDS)


_penalty_handlers: list = []


# The downtime slash (marketplace.deployments.penalties) registers here.
def register_lease_failure_penalty(handler) -> None:
    """`handler(lease, last_good_heartbeat)`: the rewards/slashing work fills this in."""
    if handler not in _penalty_handlers:
        _penalty_handlers.append(handler)


def node_leases_fail(*, node_id: int, last_good: datetime) -> int:
    """The node is still down after the grace period: end its leases, charge nothing after the last
    good heartbeat, penalise the provider, and re-match each deployment elsewhere (unless turned off)."""
    node = Node.objects.filter(id=node_id).first()
    if node is None or (node.status == NodeStatus.ONLINE and node.online_since and node.online_since > last_good):
        return 0  # came back within the grace period
    now = clock.now()
    if node.last_seen_at and node.last_seen_at > last_good:
        # Heard from since (back, then silent again): the grace counts from the newer heartbeat,
        # whose own check is scheduled (or the fold's sweep finds it).
        if node.status != NodeStatus.OFFLINE or now - node.last_seen_at < timedelta(
            seconds=settings.FAILOVER_GRACE_SECONDS
        ):
            return 0
        last_good = node.last_seen_at
    silent = int((now - last_good).total_seconds())
    return _node_leases_end(
        node_id,
        charge_until=last_good,
        reason=CloseReason.PROVIDER_FAILED,
        event="node_failed",
        message=(
            f"Node {node_id} stopped heartbeating at {last_good:%H:%M:%S} UTC; silent {silent} s, longer than the "
            f"{settings.FAILOVER_GRACE_SECONDS} s grace. Not charged after its last heartbeat."
        ),
        penalise=True,
    )


def node_disabled(node_id: int, at: datetime) -> int:
    """providers' disabled hook (an admin took the node off the market, in this transaction): its
    leases end now, charged until now, the provider not penalised (a slash is a separate decision),
    and are re-matched elsewhere unless failover is off."""
    return _node_leases_end(
        node_id,
        charge_until=at,
        reason=CloseReason.NODE_DISABLED,
        event="node_disabled",
        message=f"Node {node_id} was taken off the market by an administrator. Not charged after {at:%H:%M:%S} UTC.",
        penalise=False,
    )


def _node_leases_end(
    node_id: int, *, charge_until: datetime, reason: str, event: str, message: str, penalise: bool
) -> int:
    ended = 0
    now = clock.now()
    for lease_id in list(Lease.objects.filter(node_id=node_id, status=LeaseStatus.ACTIVE).values_list("id", flat=True)):
        with transaction.atomic():
            lease = Lease.objects.select_for_update(of=("self",)).select_related("meter", "node").get(id=lease_id)
            if lease.status != LeaseStatus.ACTIVE:
                continue
            deployment = Deployment.objects.select_for_update().get(id=lease.deployment_id)
            _lease_end(lease, reason=reason, now=now, charge_until=max(charge_until, lease.started_at))
            if penalise:
                for handler in _penalty_handlers:
                    handler(lease, charge_until)
            _event(deployment, event, message, at=now, lease=lease)
            ended += 1
            pinned = deployment.spec.get("node")
            if not deployment.failover or pinned:
                # A pinned deployment can only run on its node: a search elsewhere cannot succeed,
                # so nothing is held for one. Closed rather than left waiting: the renter stops
                # holding credits for a node that may never return and can re-deploy the same spec
                # on a similar node in one click (its page offers it).
                deployment.status = DeploymentStatus.CLOSED
                deployment.close_reason = reason
                deployment.closed_at = now
                deployment.save(update_fields=["status", "close_reason", "closed_at", "updated_at"])
                failed = reason == CloseReason.PROVIDER_FAILED
                why = "The node failed" if failed else "The node was taken off the market"
                if pinned:
                    why += f" and this deployment is pinned to node {pinned}, so it cannot move to another node"
                else:
                    why += " and failover is off for this deployment"
                _event(deployment, "closed", f"{why}. Nothing more is charged or held.", at=now)
                continue
            _rematch(deployment, failed_node=node_id, now=now)
    return ended


def _rematch(deployment: Deployment, *, failed_node: int, now: datetime) -> None:
    last = deployment.orders.order_by("-attempt").first()
    attempt = (last.attempt if last else 0) + 1
    excluded = sorted(set((last.excluded_node_ids if last else []) + [failed_node]))
    amount = deployment.max_price_per_hour_micros * hold_hours(deployment.spec)
    try:
        with transaction.atomic():
            deployment.hold = hold_place(
                user=deployment.owner,
                amount=amount,
                reference_type="deployment",
                reference_id=f"{deployment.id}:{attempt}",
            )
    except ApplicationError:
        deployment.status = DeploymentStatus.CLOSED
        deployment.close_reason = CloseReason.INSUFFICIENT_FUNDS
        deployment.closed_at = now
        deployment.save(update_fields=["status", "close_reason", "closed_at", "updated_at"])
        _event(deployment, "closed", "Could not fail over: not enough credits to hold for a new node.", at=now)
        return
    deployment.status = DeploymentStatus.PENDING
    deployment.save(update_fields=["status", "hold", "updated_at"])
    _order_open(deployment, attempt=attempt, excluded=excluded, now=now)
    _event(
        deployment, "failover", f"Looking for another node (attempt {attempt}, excluding node {failed_node}).", at=now
    )


def deployments_expire(*, now: datetime | None = None) -> int:
    now = now or clock.now()
    expired = 0
    for deployment in Deployment.objects.filter(status__in=ACTIVE_DEPLOYMENT_STATUSES, ends_at__lte=now):
        deployment_close(deployment=deployment, reason=CloseReason.EXPIRED, message="The duration is over.")
        expired += 1
    return expired


def billing_close_handler(reference_type: str, reference_id: str, reason: str) -> None:
    """billing's hook: a lease's meter ran out of funds (after the warning) or its reservation expired."""
    if reference_type != "lease" or not str(reference_id).isdigit():
        return
    lease = Lease.objects.filter(id=int(reference_id)).select_related("deployment").first()
    if lease is None:
        return
    close_reason = CloseReason.INSUFFICIENT_FUNDS if reason == "insufficient_funds" else CloseReason.EXPIRED
    deployment_close(deployment=lease.deployment, reason=close_reason)


def _deployment_reference(pk: int, name: str) -> BillingReference:
    return BillingReference(f"Deployment #{pk} ({name})", reverse("deployments:detail", args=[pk]))


def describe_deployment_references(ids: list[str], user) -> dict[str, BillingReference]:
    """Billing references "deployment <id>:<n>" (a deployment's hold): the renter's deployment."""
    heads = {reference_id: reference_id.split(":", 1)[0] for reference_id in ids}
    by_id = {reference_id: int(head) for reference_id, head in heads.items() if head.isdigit()}
    names = dict(Deployment.objects.filter(id__in=set(by_id.values()), owner=user).values_list("id", "name"))
    return {reference_id: _deployment_reference(pk, names[pk]) for reference_id, pk in by_id.items() if pk in names}


def describe_lease_references(ids: list[str], user) -> dict[str, BillingReference]:
    """Billing references "lease <id>": the deployment for its renter, the node for its provider."""
    columns = ("id", "deployment_id", "deployment__name", "deployment__owner_id", "node_id", "node__name")
    leases = Lease.objects.filter(id__in=[int(i) for i in ids if i.isdigit()]).values(
        *columns, "node__provider__user_id"
    )
    described = {}
    for lease in leases:
        if lease["deployment__owner_id"] == user.pk:
            described[str(lease["id"])] = _deployment_reference(lease["deployment_id"], lease["deployment__name"])
        elif lease["node__provider__user_id"] == user.pk:
            label = f"Lease #{lease['id']} on {lease['node__name'] or 'node ' + str(lease['node_id'])}"
            described[str(lease["id"])] = BillingReference(label, reverse("providers:node", args=[lease["node_id"]]))
    return described


def demo_lease_simulate(lease_id: int) -> bool:
    """Demo nodes have no agent: report what one would, so the demo market's deployments run.
    False for a lease that is gone or not on a demo node."""
    lease = Lease.objects.filter(id=lease_id).select_related("node", "deployment").first()
    if lease is None or not lease.node.is_simulated:
        return False
    image = lease.deployment.spec["services"][0]["image"]
    return lease_events(
        lease.node_id,
        lease.id,
        [
            {"type": "provisioning", "message": f"demo node: pulling {image}"},
            {"type": "running"},
            {
                "type": "log",
                "stream": "stdout",
                "lines": [
                    f"[demo] node {lease.node.name} is a simulated demo node: no real machine runs {image}.",
                    "[demo] Register a real machine with `fizz start` to run workloads.",
                ],
            },
        ],
    )


def register_hooks() -> None:
    provider_hooks.register_assignment_source(assignments_for_node, cache_key=_assignments_key)
    provider_hooks.register_offline_handler(node_went_offline)
    provider_hooks.register_disabled_handler(node_disabled)
    provider_hooks.register_fold_handler(leases_fail_silent_nodes)
    provider_hooks.register_back_online_handler(node_back_online)
    provider_hooks.register_lease_summary(lease_summaries)
    billing_hooks.register_insufficient_funds_handler(billing_close_handler)
    register_reference_describer("deployment", describe_deployment_references)
    register_reference_describer("lease", describe_lease_references)


def unpinned_spec_source(deployment: Deployment) -> str:
    """The deployment's spec without its node pin, for a similar node: the pinned node's GPU model
    stays (added where a GPU request names none), as do the resources and the price cap."""
    import yaml

    data = yaml.safe_load(deployment.spec_source)
    pinned = deployment.spec.get("node")
    attributes = (data.get("deployment") or {}).get("attributes")
    if isinstance(attributes, dict):
        attributes.pop("node", None)
        if not attributes:
            data["deployment"].pop("attributes")
    node = Node.objects.filter(id=pinned).first() if pinned else None
    if node is not None and node.gpu_count and (deployment.spec.get("gpu_units") or 0) > 0:
        for service in (data.get("services") or {}).values():
            gpu = ((service or {}).get("resources") or {}).get("gpu")
            if isinstance(gpu, dict) and not gpu.get("model") and not gpu.get("models"):
                gpu["model"] = node.gpu_model_id
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def deployment_redeploy(*, user: User, deployment: Deployment) -> Deployment:
    """One click for a pinned deployment whose node failed (or is silent): the same spec, unpinned,
    as a new deployment; the old one is closed first if it still runs."""
    if not deployment.spec.get("node"):
        raise ApplicationError("Only a deployment pinned to one node is re-deployed this way.", status=409)
    source = unpinned_spec_source(deployment)
    with transaction.atomic():  # a refused create (credits) leaves the old deployment as it was
        if deployment.is_active:
            deployment_close(deployment=deployment, message="Re-deployed on a similar node.")
        new = deployment_create(user=user, source=source)
        _event(
            new,
            "redeploy",
            f"Re-deployment of #{deployment.id} without its pin to node {deployment.spec['node']}: "
            "any node with the same GPU model, resources and price cap may take it.",
            at=clock.now(),
        )
    return new
