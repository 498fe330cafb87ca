"""How higher apps (marketplace: leases, failover; rewards) plug into node liveness.

providers sits below marketplace, so it never imports it: marketplace registers callables here
at start-up (in its AppConfig.ready) and providers calls them.

- assignment sources: `source(node_id, reported_leases) -> list[dict]` — what the node must start
  or stop, returned in the heartbeat reply (see sdk/PROTOCOL.md). A source that keeps its state in
  the cache registers with `cache_key=key_fn`: the heartbeat then reads that key together with the
  node's credentials and challenges (one round trip) and calls `source(node_id, reported,
  cached=values)`, where `values` holds the key only if the cache had it;
- offline handlers: `handler(node_id, last_heartbeat_at)` — run after commit when a node goes
  offline (failover, penalties);
- back-online handlers: `handler(node_id, silent_since, at)` — run after commit when an offline
  node heartbeats again (`silent_since`: its last heartbeat before the outage);
- challenge failure handlers: `handler(node_id, challenge_id, reason)` — rewards/slashing;
- disabled handlers: `handler(node_id, at) -> int` — run inside the transaction that takes a node
  off the market (an admin disabled it): end what runs on it; returns how many leases ended;
- fold handlers: `handler(now) -> int` — run at the end of every liveness fold (every
  LIVENESS_FOLD_SECONDS), after silent nodes went offline: periodic work that must follow
  liveness closely (failing over leases of nodes silent longer than the grace); returns a count.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

AssignmentSource = Callable[[int, list[dict[str, Any]]], list[dict[str, Any]]]
OfflineHandler = Callable[[int, datetime], None]
BackOnlineHandler = Callable[[int, datetime, datetime], None]
ChallengeFailureHandler = Callable[[int, str, str], None]
DisabledHandler = Callable[[int, datetime], int]

_assignment_sources: list[AssignmentSource] = []
_assignment_cache_keys: dict[AssignmentSource, Callable[[int], str]] = {}
_offline_handlers: list[OfflineHandler] = []
_back_online_handlers: list[BackOnlineHandler] = []
_challenge_failure_handlers: list[ChallengeFailureHandler] = []
_disabled_handlers: list[DisabledHandler] = []
FoldHandler = Callable[[datetime], int]
_fold_handlers: list[FoldHandler] = []


def _add(registry: list, func: Callable) -> Callable:
    if func not in registry:
        registry.append(func)
    return func


def register_assignment_source(
    func: AssignmentSource, *, cache_key: Callable[[int], str] | None = None
) -> AssignmentSource:
    if cache_key is not None:
        _assignment_cache_keys[func] = cache_key
    return _add(_assignment_sources, func)


def assignment_cache_keys(node_id: int) -> list[str]:
    """The cache keys the assignment sources will read for this node (prefetched by the heartbeat)."""
    return [key_fn(node_id) for key_fn in _assignment_cache_keys.values()]


def register_offline_handler(func: OfflineHandler) -> OfflineHandler:
    return _add(_offline_handlers, func)


def register_back_online_handler(func: BackOnlineHandler) -> BackOnlineHandler:
    return _add(_back_online_handlers, func)


# providers.slashing.liveness_failure_slash registers here (ProvidersConfig.ready): repeated failures slash.
def register_challenge_failure_handler(func: ChallengeFailureHandler) -> ChallengeFailureHandler:
    return _add(_challenge_failure_handlers, func)


def register_disabled_handler(func: DisabledHandler) -> DisabledHandler:
    return _add(_disabled_handlers, func)


def register_fold_handler(func: FoldHandler) -> FoldHandler:
    return _add(_fold_handlers, func)


def unregister(func: Callable) -> None:
    registries = (
        _assignment_sources, _offline_handlers, _challenge_failure_handlers, _disabled_handlers,
        _fold_handlers, _back_online_handlers, _era_lease_sources,
    )  # fmt: skip
    for registry in registries:
        if func in registry:
            registry.remove(func)
    _assignment_cache_keys.pop(func, None)


def assignments_for_node(
    node_id: int, reported_leases: list[dict[str, Any]], cached: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """What the node must start or stop. `cached`: values already read for `assignment_cache_keys`."""
    assignments: list[dict[str, Any]] = []
    for source in _assignment_sources:
        if cached is not None and source in _assignment_cache_keys:
            assignments.extend(source(node_id, reported_leases, cached=cached))  # type: ignore[call-arg]
        else:
            assignments.extend(source(node_id, reported_leases))
    return assignments


def node_offline(node_id: int, at: datetime) -> None:
    for handler in _offline_handlers:
        handler(node_id, at)


def node_back_online(node_id: int, silent_since: datetime, at: datetime) -> None:
    for handler in _back_online_handlers:
        handler(node_id, silent_since, at)


def liveness_folded(now: datetime) -> int:
    return sum(handler(now) for handler in _fold_handlers)


def challenge_failed(node_id: int, challenge_id: str, reason: str) -> None:
    for handler in _challenge_failure_handlers:
        handler(node_id, challenge_id, reason)


def node_disabled(node_id: int, at: datetime) -> int:
    return sum(handler(node_id, at) for handler in _disabled_handlers)


LeaseSummary = Callable[[list[int]], dict[int, str]]
_lease_summaries: list[LeaseSummary] = []


def register_lease_summary(func: LeaseSummary) -> LeaseSummary:
    """`func(node_ids) -> {node_id: "lease 7: python:3.12 for dev@…"}` for the provider dashboard."""
    return _add(_lease_summaries, func)


def lease_summaries(node_ids: list[int]) -> dict[int, str]:
    result: dict[int, str] = {}
    for func in _lease_summaries:
        result.update(func(node_ids))
    return result


EraLeaseSource = Callable[[list[int], datetime, datetime], list[dict[str, Any]]]
_era_lease_sources: list[EraLeaseSource] = []


def register_era_leases(func: EraLeaseSource) -> EraLeaseSource:
    """`func(node_ids, start, end) -> [{"node_id", "id", "start", "end", "gpus", "cpu_cores",
    "price_per_hour_micros", "fee_rate"}]`: the leases that ran on those nodes within [start, end)
    (each clipped to it), for the era rewards' utilization and rental income (marketplace)."""
    return _add(_era_lease_sources, func)


def era_leases(node_ids: list[int], start: datetime, end: datetime) -> dict[int, list[dict[str, Any]]]:
    result: dict[int, list[dict[str, Any]]] = {}
    for func in _era_lease_sources:
        for lease in func(node_ids, start, end):
            result.setdefault(lease["node_id"], []).append(lease)
    return result
