"""Uptime over 1/7/30 days from outage intervals, and trust tiers from 24-hour eras.

Uptime = 1 − offline seconds / window, where offline time is the union of offline periods and
challenge penalties, less maintenance (excused: removed from both the downtime and the window).
A node's window starts no earlier than its registration, so a new node is judged on its life.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Max, Q
from spheron_sdk.rewards import intervals_merge, intervals_subtract

from core import clock
from core.db import insert_rows, update_columns_by_id
from providers.models import (
    EraOutcome,
    Node,
    NodeEra,
    NodeEvent,
    NodeEventKind,
    NodeMode,
    NodeOutage,
    NodeStatus,
    OutageKind,
)

Interval = tuple[datetime, datetime]
WINDOWS = {"uptime_1d": timedelta(days=1), "uptime_7d": timedelta(days=7), "uptime_30d": timedelta(days=30)}
ERA = timedelta(hours=24)

# protocol-facts.md: uptime an era needs for each tier, and the consecutive eras to move.
TIER_UPTIME = {1: 0.99, 2: 0.98, 3: 0.97, 4: 0.95, 5: 0.90, 6: 0.85, 7: 0.75}
PROMOTE_AFTER = {2: 30, 3: 23, 4: 17, 5: 11, 6: 5, 7: 3}
DEMOTE_AFTER = {1: 32, 2: 25, 3: 20, 4: 14, 5: 7, 6: 5}
# Fizz (community) nodes live in tiers 4–7; the secure tiers 1–3 are for provider-mode nodes.
BEST_TIER = {NodeMode.FIZZ: 4, NodeMode.PROVIDER: 1}


# One implementation of the interval arithmetic: the SDK's, which the era receipts recompute with.
merge = intervals_merge
subtract = intervals_subtract


def seconds_within(intervals: list[Interval], start: datetime, end: datetime) -> float:
    total = 0.0
    for s, e in intervals:
        s, e = max(s, start), min(e, end)
        if e > s:
            total += (e - s).total_seconds()
    return total


def uptime_between(
    outages: list[tuple[str, datetime, datetime | None]], start: datetime, end: datetime, now: datetime
) -> tuple[float, float]:
    """(uptime, share of the window excused by maintenance) over [start, end]."""
    if end <= start:
        return 1.0, 0.0
    down = merge((s, e or now) for kind, s, e in outages if kind != OutageKind.MAINTENANCE)
    excused = merge((s, e or now) for kind, s, e in outages if kind == OutageKind.MAINTENANCE)
    window = (end - start).total_seconds()
    excused_seconds = seconds_within(excused, start, end)
    counted = window - excused_seconds
    if counted <= 0:
        return 1.0, 1.0
    down_seconds = seconds_within(subtract(down, excused), start, end)
    return max(0.0, min(1.0, 1.0 - down_seconds / counted)), excused_seconds / window


def _outages_by_node(node_ids: list[int], since: datetime) -> dict[int, list]:
    rows = NodeOutage.objects.filter(node_id__in=node_ids).filter(Q(ended_at__isnull=True) | Q(ended_at__gt=since))
    grouped: dict[int, list] = defaultdict(list)
    for node_id, kind, started_at, ended_at in rows.values_list("node_id", "kind", "started_at", "ended_at"):
        grouped[node_id].append((kind, started_at, ended_at))
    return grouped


def node_uptime(node: Node, *, now: datetime | None = None) -> dict[str, float]:
    now = now or clock.now()
    outages = _outages_by_node([node.id], now - WINDOWS["uptime_30d"]).get(node.id, [])
    born = node.registered_at or node.created_at
    return {
        field: round(uptime_between(outages, max(now - window, born), now, now)[0], 6)
        for field, window in WINDOWS.items()
    }


def refresh_uptime(*, now: datetime | None = None, batch: int = 2000) -> int:
    """Recompute uptime_1d/7d/30d of every agent-run node; write only the ones that moved."""
    now = now or clock.now()
    updated = 0
    last_id = 0
    while True:
        nodes = list(
            Node.objects.filter(is_simulated=False, registered_at__isnull=False, id__gt=last_id)
            .order_by("id")
            .only("id", "registered_at", "uptime_1d", "uptime_7d", "uptime_30d")[:batch]
        )
        if not nodes:
            return updated
        last_id = nodes[-1].id
        outages = _outages_by_node([n.id for n in nodes], now - WINDOWS["uptime_30d"])
        changed = []
        for node in nodes:
            values = {
                field: round(uptime_between(outages.get(node.id, []), max(now - w, node.registered_at), now, now)[0], 6)
                for field, w in WINDOWS.items()
            }
            if any(abs(getattr(node, f) - v) > 1e-6 for f, v in values.items()):
                for field, value in values.items():
                    setattr(node, field, value)
                changed.append(node)
        if changed:
            Node.objects.bulk_update(changed, list(WINDOWS))
            updated += len(changed)


def uptime_daily(node: Node, *, days: int = 30, now: datetime | None = None) -> list[dict]:
    """Uptime per UTC day for the chart, oldest first (None before the node existed)."""
    now = now or clock.now()
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    outages = _outages_by_node([node.id], today - timedelta(days=days)).get(node.id, [])
    born = node.registered_at or node.created_at
    result = []
    for offset in range(days - 1, -1, -1):
        start = today - timedelta(days=offset)
        end = min(start + ERA, now)
        if end <= born:
            result.append({"day": start.date(), "uptime": None})
            continue
        value, _excused = uptime_between(outages, max(start, born), end, now)
        result.append({"day": start.date(), "uptime": value})
    return result


def heartbeat_strip(
    node: Node, *, hours: int = 24, bucket_minutes: int = 15, now: datetime | None = None
) -> list[dict]:
    """The last `hours` in buckets: share of each bucket the node was up (None before it existed)."""
    now = now or clock.now()
    bucket = timedelta(minutes=bucket_minutes)
    start = now - timedelta(hours=hours)
    outages = _outages_by_node([node.id], start).get(node.id, [])
    born = node.registered_at or node.created_at
    buckets = []
    cursor = start
    while cursor < now:
        end = min(cursor + bucket, now)
        if end <= born:
            buckets.append({"start": cursor, "uptime": None, "maintenance": False})
        else:
            value, excused = uptime_between(outages, max(cursor, born), end, now)
            buckets.append({"start": cursor, "uptime": value, "maintenance": excused > 0.5})
        cursor = end
    return buckets


# --- Eras and trust tiers ----------------------------------------------------------------------


def era_outcome(tier: int, uptime: float) -> str:
    if tier > 1 and uptime > TIER_UPTIME[tier - 1]:
        return EraOutcome.GOOD
    if uptime <= TIER_UPTIME[tier]:
        return EraOutcome.BAD
    return EraOutcome.NEUTRAL


def next_tier(*, tier: int, mode: str, good_streak: int, bad_streak: int) -> int:
    if tier > BEST_TIER.get(mode, 1) and tier in PROMOTE_AFTER and good_streak >= PROMOTE_AFTER[tier]:
        return tier - 1
    if tier in DEMOTE_AFTER and bad_streak >= DEMOTE_AFTER[tier]:
        return tier + 1
    return tier


def last_era_end(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def close_eras(*, now: datetime | None = None, max_eras: int = 30, batch: int = 2000) -> int:
    """Close every finished era (ending at 00:00 UTC) not yet closed, for each agent-run node:
    `batch` nodes a transaction, a handful of queries each (their rows locked, then their last eras,
    their outages; the eras, events and nodes written in bulk)."""
    now = now or clock.now()
    latest_end = last_era_end(now)
    closed = 0
    node_ids = list(
        Node.objects.filter(is_simulated=False, registered_at__lt=latest_end)
        .exclude(status=NodeStatus.DISABLED)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for offset in range(0, len(node_ids), batch):
        ids = node_ids[offset : offset + batch]
        closed += _close_eras_batch(ids, latest_end=latest_end, now=now, max_eras=max_eras)
    return closed


_ERA_FIELDS = ("id", "mode", "registered_at", "trust_tier")


def _close_eras_batch(node_ids: list[int], *, latest_end: datetime, now: datetime, max_eras: int) -> int:
    """The eras of a batch of nodes. A node's streaks are its last era's (NodeEra.good_streak and
    bad_streak), so the node's row is written only when its tier moves: an era close that wrote
    every node's row each day (19 indexes to maintain a row) took half the era's time at 100k nodes."""
    with transaction.atomic():
        nodes = list(Node.objects.select_for_update().filter(id__in=node_ids).order_by("id").only(*_ERA_FIELDS))
        lasts = dict(
            NodeEra.objects.filter(node_id__in=node_ids)
            .values("node_id")
            .annotate(last=Max("ended_at"))
            .values_list("node_id", "last")
        )
        streaks = {
            node_id: (good, bad)
            for node_id, ended_at, good, bad in NodeEra.objects.filter(
                node_id__in=node_ids, ended_at__in=set(lasts.values())
            ).values_list("node_id", "ended_at", "good_streak", "bad_streak")
            if lasts[node_id] == ended_at
        }
        starts = {
            node.id: max(lasts.get(node.id) or last_era_end(node.registered_at), latest_end - ERA * max_eras)
            for node in nodes
        }
        pending = [node for node in nodes if starts[node.id] + ERA <= latest_end]
        if not pending:
            return 0
        outages = _outages_by_node([node.id for node in pending], min(starts[node.id] for node in pending))
        eras: list[NodeEra] = []
        events: list[NodeEvent] = []
        moved = {}
        for node in pending:
            tier = node.trust_tier
            _node_eras(
                node, streaks.get(node.id, (0, 0)), starts[node.id], latest_end, outages.get(node.id, []), now,
                eras, events,
            )  # fmt: skip
            if node.trust_tier != tier:
                moved[node.id] = (node.trust_tier, clock.now())
        insert_rows(NodeEra, eras)
        NodeEvent.objects.bulk_create(events, batch_size=2000)
        update_columns_by_id(Node, ("trust_tier", "updated_at"), moved)
        return len(eras)


def _node_eras(
    node: Node,
    streaks: tuple[int, int],
    start: datetime,
    latest_end: datetime,
    outages: list,
    now: datetime,
    eras: list[NodeEra],
    events: list[NodeEvent],
) -> None:
    """One node's eras from `start` to `latest_end`, from its last era's (good, bad) streaks: its
    tier moves in memory, the rows appended."""
    good, bad = streaks
    while start + ERA <= latest_end:
        end = start + ERA
        uptime, excused = uptime_between(outages, max(start, node.registered_at), end, now)
        tier_before = node.trust_tier
        if excused > 0.5:
            outcome = EraOutcome.MAINTENANCE
        else:
            outcome = era_outcome(tier_before, uptime)
            if outcome == EraOutcome.GOOD:
                good, bad = good + 1, 0
            elif outcome == EraOutcome.BAD:
                good, bad = 0, bad + 1
            else:
                good = bad = 0
            node.trust_tier = next_tier(tier=tier_before, mode=node.mode, good_streak=good, bad_streak=bad)
            if node.trust_tier != tier_before:
                good = bad = 0
                verb = "promoted" if node.trust_tier < tier_before else "demoted"
                events.append(
                    NodeEvent(
                        node=node,
                        kind=NodeEventKind.TIER,
                        at=end,
                        message=f"{verb} from tier {tier_before} to tier {node.trust_tier} (era uptime {uptime:.2%})",
                    )
                )
        eras.append(
            NodeEra(
                node=node,
                started_at=start,
                ended_at=end,
                uptime=round(uptime, 6),
                outcome=outcome,
                tier_before=tier_before,
                tier_after=node.trust_tier,
                good_streak=good,
                bad_streak=bad,
            )
        )
        start = end
