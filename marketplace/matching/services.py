"""The matchmaker's decision: candidates in SQL (`candidates`), scores in Python (`scoring`, with
spheron_sdk.matching), capacity reserved with one conditional update (providers.capacity), and a
commitment anyone can check (`proof`). It decides and returns placements (`decide`);
marketplace.deployments.services claims the orders and starts the leases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from spheron_sdk import matching

from marketplace.matching import candidates, proof, scoring
from marketplace.models import MatchRecord, Order
from providers import capacity
from providers.capacity import Request
from providers.models import Region

MAX_RESERVE_ATTEMPTS = 5


@dataclass
class _Work:
    """One order of a batch while it is matched."""

    order: Order
    request: Request
    rows: dict[int, dict[str, Any]]
    candidates: list[dict[str, Any]]
    seed: str
    need: tuple[int, int, int, int]
    scored: list[tuple[Decimal, int, dict[str, Decimal]]] | None = None  # matching.ranked
    winner: int | None = None


@dataclass(frozen=True)
class Placement:
    """The node the matchmaker chose, as its candidate query read it: what a lease needs."""

    node_id: int
    gpu_model_id: str | None
    region_id: str
    is_simulated: bool
    provider_name: str
    payee_id: int  # the provider's user, whom the lease's meter pays


@dataclass(frozen=True)
class Decision:
    """What the matchmaker decided for one order: a placement at a price (its node's capacity
    reserved, its MatchRecord written), or none: `failed_reason` when the order is out of time and
    of candidates (what to tell the renter), else it waits and is tried again."""

    order: Order
    request: Request
    placement: Placement | None = None
    price: int = 0
    record: MatchRecord | None = None
    failed_reason: str = ""


def decide(orders: list[Order], *, now: datetime) -> list[Decision]:
    """Place a batch of claimed orders (locked by the caller's transaction), one Decision per order
    in their order: candidates found in one round trip, each order scored on its own, capacity
    reserved for all of them with one conditional UPDATE (orders whose node was taken meanwhile drop
    it and try their next best, up to MAX_RESERVE_ATTEMPTS rounds), the proofs recorded with one
    INSERT. Starting the leases is the caller's (marketplace.deployments.services.match_orders)."""
    works = []
    requests = [Request.from_spec(order.deployment.spec) for order in orders]
    found = candidates.candidate_rows_many([(r, o.excluded_node_ids) for r, o in zip(requests, orders, strict=True)])
    providers = scoring.provider_facts({row["provider_id"] for rows in found for row in rows})
    codes = set().union(*(scoring.regions_needed(rows, r) for rows, r in zip(found, requests, strict=True)))
    regions = {r.code: r for r in Region.objects.filter(code__in=codes)} if codes else {}
    for order, request, rows in zip(orders, requests, found, strict=True):
        works.append(
            _Work(
                order=order,
                request=request,
                rows={row["id"]: row for row in rows},
                candidates=scoring.snapshot(rows, request, providers=providers, regions=regions),
                seed=scoring.order_seed(order),
                need=(max(request.gpu_units, 0), request.cpu_cores, request.memory_gb, request.storage_gb),
            )
        )
    chosen = scoring.weights()
    _allocate(works, chosen)

    won = [w for w in works if w.winner is not None]
    records: dict[int, MatchRecord] = {}
    if won:
        created = MatchRecord.objects.bulk_create(
            [
                proof.match_record(
                    order=w.order,
                    candidates=w.candidates,
                    weights=chosen,
                    seed=w.seed,
                    winner=w.winner,
                    scored=w.scored,
                    now=now,
                )  # fmt: skip
                for w in won
            ]
        )
        records = {id(w): record for w, record in zip(won, created, strict=True)}
    decisions = []
    for work in works:
        if work.winner is not None:
            row = work.rows[work.winner]
            provider = providers[row["provider_id"]]
            placement = Placement(
                node_id=work.winner,
                gpu_model_id=row["gpu_model_id"],
                region_id=row["region_id"],
                is_simulated=row["is_simulated"],
                provider_name=provider.name,
                payee_id=provider.user_id,
            )
            price = next(c["price_per_hour_micros"] for c in work.candidates if c["node_id"] == work.winner)
            decisions.append(Decision(work.order, work.request, placement, price, records[id(work)]))
        # Out of time and out of candidates. (Candidates left after the reserve attempts were lost
        # to other orders: stay open and try again rather than fail with nodes still free.)
        elif now >= work.order.deadline_at and not work.candidates:
            reason = candidates.no_match_reason(work.request, excluded=work.order.excluded_node_ids)
            decisions.append(Decision(work.order, work.request, failed_reason=reason))
        else:
            decisions.append(Decision(work.order, work.request))
    return decisions


def _allocate(works: list[_Work], chosen: dict[str, str]) -> None:
    """Pick each order's winner and reserve it. Orders are served in claim order; an order whose
    best node another order of the batch has already filled, or that another transaction took
    (the reservation failed), drops that node from its candidates (it was not available, so it
    leaves the proof) and is scored again without it."""
    taken: dict[int, list[int]] = {}  # capacity this batch reserved, by node
    pending = [w for w in works if w.candidates]
    for _attempt in range(MAX_RESERVE_ATTEMPTS):
        if not pending:
            return
        plan: dict[int, list[_Work]] = {}
        planned: dict[int, list[int]] = {}
        for work in pending:
            while work.candidates:
                scored = matching.ranked(work.candidates, chosen, work.seed)
                node = scored[0][1]
                row = work.rows[node]
                used = planned.get(node) or taken.get(node) or [0, 0, 0, 0]
                free = (
                    row["available_gpus"], row["available_cpu_cores"],
                    row["available_memory_gb"], row["available_storage_gb"],
                )  # fmt: skip
                if all(f - u >= n for f, u, n in zip(free, used, work.need, strict=True)):
                    planned[node] = [u + n for u, n in zip(used, work.need, strict=True)]
                    plan.setdefault(node, []).append(work)
                    work.scored = scored
                    break
                work.candidates = [c for c in work.candidates if c["node_id"] != node]
        needs = {}
        for node in plan:
            before = taken.get(node) or [0, 0, 0, 0]
            needs[node] = tuple(p - b for p, b in zip(planned[node], before, strict=True))
        reserved = capacity.reserve(needs)
        pending = []
        for node, works_on_node in plan.items():
            if node in reserved:
                taken[node] = planned[node]
                for work in works_on_node:
                    work.winner = node
            else:  # taken by another order meanwhile
                for work in works_on_node:
                    work.candidates = [c for c in work.candidates if c["node_id"] != node]
                    work.scored = None
                    if work.candidates:
                        pending.append(work)
        pending.sort(key=lambda w: (w.order.created_at, w.order.id))
