"""Heartbeats, online/offline transitions and liveness challenges.

A heartbeat costs the server one cache read (the node's credentials, cached) and one cache
write (the heartbeat itself). The database is written only when something changes: a node
coming online, a challenge issued or answered. `fold_heartbeats` (a beat task every 15 s)
moves last-seen times into PostgreSQL in batches, at most once a minute per node, and takes
nodes that went silent offline at their last heartbeat.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from core import clock
from providers import hooks
from providers.hardware import gpu_model_slug
from providers.models import (
    ChallengeStatus,
    Node,
    NodeChallenge,
    NodeEvent,
    NodeEventKind,
    NodeOutage,
    NodeStatus,
    OutageKind,
)

SECRET_PREFIX = "nsk_"
MAX_SECRET_LENGTH = 120
AUTH_CACHE_SECONDS = 300
HEARTBEAT_CACHE_SECONDS = 35 * 24 * 3600  # longer than any uptime window
FOLD_BATCH = 2000
_random = random.SystemRandom()


def _auth_key(node_id: int) -> str:
    return f"node:auth:{node_id}"


def _hb_key(node_id: int) -> str:
    return f"node:hb:{node_id}"


def _challenge_key(node_id: int) -> str:
    return f"node:chal:{node_id}"


def secret_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def node_secret_new(node_id: int) -> str:
    return f"{SECRET_PREFIX}{node_id}_{secrets.token_urlsafe(32)}"


# --- Credentials -------------------------------------------------------------------------------


def node_auth_info(node_id: int, cached: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """What the hot path needs about a node, cached: secret hash, status, maintenance.

    `cached`: values already read from the cache in one round trip (`heartbeat_cache_keys`); the
    credentials key is absent there when the cache did not have it."""
    key = _auth_key(node_id)
    info = cached.get(key) if cached is not None else cache.get(key)
    if info is None:
        row = Node.objects.filter(id=node_id).values("secret_hash", "status", "in_maintenance").first()
        info = (
            {"missing": True}
            if row is None
            else {"h": row["secret_hash"], "s": row["status"], "m": row["in_maintenance"]}
        )
        cache.set(key, info, AUTH_CACHE_SECONDS)
    return None if info.get("missing") else info


def node_auth_forget(node_id: int) -> None:
    cache.delete(_auth_key(node_id))


def heartbeat_cache_keys(node_id: int) -> list[str]:
    """Everything a heartbeat reads from the cache: credentials, pending challenges, and what the
    assignment sources keep there (marketplace's active leases), fetched with one MGET."""
    return [_auth_key(node_id), _challenge_key(node_id), *hooks.assignment_cache_keys(node_id)]


def _secret_node_id(raw_secret: str) -> int | None:
    if not raw_secret.startswith(SECRET_PREFIX) or len(raw_secret) > MAX_SECRET_LENGTH:
        return None
    node_part, _, rest = raw_secret[len(SECRET_PREFIX) :].partition("_")
    if not (node_part.isascii() and node_part.isdigit()) or not rest or len(node_part) > 12:  # not '²'
        return None
    return int(node_part)


def _verified(info: dict[str, Any] | None, raw_secret: str) -> bool:
    return info is not None and bool(info["h"]) and hmac.compare_digest(info["h"], secret_hash(raw_secret))


def node_authenticate(raw_secret: str) -> tuple[int, dict[str, Any]] | None:
    """(node id, auth info) for a valid node secret `nsk_<id>_<random>`, else None."""
    node_id = _secret_node_id(raw_secret)
    if node_id is None:
        return None
    info = node_auth_info(node_id)
    return (node_id, info) if _verified(info, raw_secret) else None  # type: ignore[return-value]


def node_authenticate_heartbeat(raw_secret: str) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """Like `node_authenticate`, reading the rest of the heartbeat's cache state in the same round
    trip: (node id, auth info, {key: value} for `heartbeat_cache_keys`) or None."""
    node_id = _secret_node_id(raw_secret)
    if node_id is None:
        return None
    cached = cache.get_many(heartbeat_cache_keys(node_id))
    info = node_auth_info(node_id, cached)
    return (node_id, info, cached) if _verified(info, raw_secret) else None  # type: ignore[return-value]


# --- Heartbeats --------------------------------------------------------------------------------


def heartbeat_receive(
    *,
    node_id: int,
    info: dict[str, Any],
    sequence: int,
    agent_version: str,
    usage: dict[str, Any],
    challenge_responses: list[dict[str, Any]],
    leases: list[dict[str, Any]],
    stopping: bool,
    cached: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record one heartbeat and build the reply: status, challenges, assignments.

    `cached`: the values `node_authenticate_heartbeat` read (pending challenges, assignment
    sources' state); without it they are read here, one cache call each."""
    now = clock.now()
    cache.set(
        _hb_key(node_id),
        {"t": now.timestamp(), "seq": sequence, "v": agent_version, "u": usage, "l": leases},
        HEARTBEAT_CACHE_SECONDS,
    )
    status = info["s"]
    maintenance = info["m"]
    if status == NodeStatus.DISABLED:
        return _reply(now, status, maintenance, [], [])
    if stopping:
        node_mark_offline(node_id=node_id, at=now, reason="the agent stopped", clean=True)
        status = NodeStatus.OFFLINE
    elif status != NodeStatus.ONLINE:
        node_mark_online(node_id=node_id, at=now)
        status = NodeStatus.ONLINE

    answered = set()
    for response in challenge_responses:
        challenge_answer(node_id=node_id, response=response, now=now)
        answered.add(response.get("id"))
    chal_key = _challenge_key(node_id)
    pending = (cached.get(chal_key) if cached is not None else cache.get(chal_key)) or []
    still_pending = [c for c in pending if c["id"] not in answered and c["expires_ts"] > now.timestamp()]
    if status == NodeStatus.ONLINE and not maintenance and _challenge_due():
        still_pending.append(challenge_issue(node_id=node_id, now=now))
    if still_pending != pending:
        cache.set(chal_key, still_pending, settings.NODE_CHALLENGE_TTL_SECONDS * 2)

    assignments = [] if stopping else hooks.assignments_for_node(node_id, leases, cached)
    challenges = [
        {"id": c["id"], "nonce": c["nonce"], "kind": "resources", "expires_at": c["expires_at"]} for c in still_pending
    ]
    return _reply(now, status, maintenance, challenges, assignments)


def _reply(now: datetime, status: str, maintenance: bool, challenges: list, assignments: list) -> dict[str, Any]:
    return {
        "status": status,
        "maintenance": maintenance,
        "server_time": now.isoformat().replace("+00:00", "Z"),
        "heartbeat_interval_seconds": settings.NODE_HEARTBEAT_INTERVAL_SECONDS,
        "challenges": challenges,
        "assignments": assignments,
    }


def _challenge_due() -> bool:
    per_heartbeat = Decimal(settings.NODE_CHALLENGES_PER_HOUR) * settings.NODE_HEARTBEAT_INTERVAL_SECONDS / 3600
    return _random.random() < float(per_heartbeat)


def last_heartbeats(node_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The latest heartbeat of each node still in the cache: {"at": datetime, "usage": ..., ...}."""
    found = cache.get_many([_hb_key(node_id) for node_id in node_ids])
    result = {}
    for node_id in node_ids:
        hb = found.get(_hb_key(node_id))
        if hb:
            result[node_id] = {
                "at": datetime.fromtimestamp(hb["t"], tz=UTC),
                "sequence": hb.get("seq"),
                "agent_version": hb.get("v"),
                "usage": hb.get("u") or {},
                "leases": hb.get("l") or [],
            }
    return result


# --- Transitions -------------------------------------------------------------------------------


def node_mark_online(*, node_id: int, at: datetime) -> bool:
    """Pending/offline → online. Starts the reward cool-down. False if nothing changed."""
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(id=node_id).first()
        if node is None or node.status in (NodeStatus.ONLINE, NodeStatus.DISABLED):
            return False
        was_pending = node.status == NodeStatus.PENDING
        node.status = NodeStatus.ONLINE
        node.online_since = at
        node.last_seen_at = at
        node.rewards_eligible_from = at + timedelta(seconds=settings.NODE_REWARD_COOLDOWN_SECONDS)
        node.save(update_fields=["status", "online_since", "last_seen_at", "rewards_eligible_from", "updated_at"])
        outages = NodeOutage.objects.filter(node=node, kind=OutageKind.OFFLINE, ended_at__isnull=True)
        silent_since = outages.order_by("started_at").values_list("started_at", flat=True).first()
        outages.update(ended_at=at)
        if silent_since is not None:
            transaction.on_commit(lambda: hooks.node_back_online(node_id, silent_since, at))
        NodeEvent.objects.create(
            node=node,
            kind=NodeEventKind.ONLINE,
            at=at,
            message="first heartbeat" if was_pending else "heartbeats resumed; rewards after the 3-hour cool-down",
        )
    node_auth_forget(node_id)
    return True


def node_mark_offline(*, node_id: int, at: datetime, reason: str, clean: bool = False) -> bool:
    """Online → offline from `at` (the last heartbeat). False if it was not online."""
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(id=node_id).first()
        if node is None or node.status != NodeStatus.ONLINE:
            return False
        if not clean:
            # A heartbeat may have landed between the fold's read and this lock: then it is alive.
            latest = cache.get(_hb_key(node_id))
            if latest and latest["t"] > at.timestamp():
                return False
        node.status = NodeStatus.OFFLINE
        node.online_since = None
        node.last_seen_at = max(filter(None, [node.last_seen_at, at]))
        node.save(update_fields=["status", "online_since", "last_seen_at", "updated_at"])
        NodeOutage.objects.create(node=node, kind=OutageKind.OFFLINE, started_at=at, reason=reason[:200])
        NodeEvent.objects.create(
            node=node, kind=NodeEventKind.STOPPED if clean else NodeEventKind.OFFLINE, at=at, message=reason[:300]
        )
        transaction.on_commit(lambda: hooks.node_offline(node_id, at))
    node_auth_forget(node_id)
    return True


def fold_heartbeats(*, now: datetime | None = None) -> dict[str, int]:
    """Heartbeats from the cache into the database; silent nodes offline; expired challenges missed;
    then the fold handlers (marketplace: failover of nodes silent longer than the grace)."""
    now = now or clock.now()
    timeout = timedelta(seconds=settings.NODE_OFFLINE_AFTER_SECONDS)
    resolution = timedelta(seconds=settings.NODE_LAST_SEEN_RESOLUTION_SECONDS)
    stats = {"nodes": 0, "updated": 0, "offline": 0, "missed": 0}
    last_id = 0
    while True:
        chunk = list(
            Node.objects.filter(status=NodeStatus.ONLINE, is_simulated=False, id__gt=last_id)
            .order_by("id")
            .values_list("id", "last_seen_at")[:FOLD_BATCH]
        )
        if not chunk:
            break
        last_id = chunk[-1][0]
        stats["nodes"] += len(chunk)
        heartbeats = last_heartbeats([node_id for node_id, _ in chunk])
        changed: list[tuple[int, datetime, dict]] = []
        silent: list[tuple[int, datetime]] = []
        for node_id, last_seen in chunk:
            hb = heartbeats.get(node_id)
            latest = max(filter(None, [hb["at"] if hb else None, last_seen]), default=None)
            if latest is None or now - latest > timeout:
                silent.append((node_id, latest or now))
            elif hb and (last_seen is None or hb["at"] - last_seen >= resolution):
                changed.append((node_id, hb["at"], hb["usage"]))
        if changed:
            _last_seen_write(changed)
            stats["updated"] += len(changed)
        for node_id, at in silent:
            stats["offline"] += node_mark_offline(node_id=node_id, at=at, reason="no heartbeat")
    stats["missed"] = challenges_expire(now=now)
    # After the offline transitions above: a grace shorter than NODE_OFFLINE_AFTER_SECONDS fails
    # over in the same fold that finds the node silent.
    stats["followed_up"] = hooks.liveness_folded(now)
    return stats


_FOLD_UPDATE_CHUNK = 500  # rows per UPDATE: 1,500 parameters, within every SQLite's limit


def _last_seen_write(rows: list[tuple[int, datetime, dict]]) -> None:
    """`last_seen_at` and `usage` of many nodes: one `UPDATE … FROM (VALUES …)` per chunk.

    Django's bulk_update builds a `CASE WHEN` per row in Python: 13,000 nodes took 6–8 s, nearly
    all of it CPU in this process. PostgreSQL, and SQLite since 3.33, take `UPDATE … FROM`."""
    quote = connection.ops.quote_name
    table = quote(Node._meta.db_table)
    seen_field, usage_field = Node._meta.get_field("last_seen_at"), Node._meta.get_field("usage")
    usage_value = "CAST(v.column3 AS jsonb)" if connection.vendor == "postgresql" else "v.column3"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _FOLD_UPDATE_CHUNK):
            chunk = rows[start : start + _FOLD_UPDATE_CHUNK]
            params: list[Any] = []
            for node_id, at, usage in chunk:
                params += [
                    node_id,
                    seen_field.get_db_prep_save(at, connection),
                    usage_field.get_db_prep_save(usage, connection),
                ]
            cursor.execute(
                f"UPDATE {table} SET {quote(seen_field.column)} = v.column2, {quote(usage_field.column)} = "
                f"{usage_value} FROM (VALUES {', '.join(['(%s, %s, %s)'] * len(chunk))}) AS v "
                f"WHERE {table}.id = v.column1",
                params,
            )


# --- Challenges --------------------------------------------------------------------------------


def challenge_issue(*, node_id: int, now: datetime) -> dict[str, Any]:
    """A new challenge for the node, with what must be there: its claims less what leases use."""
    node = Node.objects.select_related("gpu_model").get(id=node_id)
    expected = {
        "agent_version": settings.NODE_MIN_AGENT_VERSION,
        "cpu_cores": node.cpu_cores,
        "memory_gb": node.memory_gb,
        "memory_free_gb": node.available_memory_gb,
        "storage_free_gb": node.available_storage_gb,
        "gpu_kind": node.gpu_model.kind,
        "gpu_model": node.gpu_model_id,
        "gpu_count": node.gpu_count if node.gpu_model.kind == "gpu" else 0,
        "gpus_free": node.available_gpus if node.gpu_model.kind == "gpu" else 0,
        "vram_gb": node.vram_gb,
    }
    expires_at = now + timedelta(seconds=settings.NODE_CHALLENGE_TTL_SECONDS)
    challenge = NodeChallenge.objects.create(
        public_id=secrets.token_hex(16),
        node_id=node_id,
        nonce=secrets.token_urlsafe(24),
        issued_at=now,
        expires_at=expires_at,
        expected=expected,
    )
    return {
        "id": challenge.public_id,
        "nonce": challenge.nonce,
        "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
        "expires_ts": expires_at.timestamp(),
    }


def _version_tuple(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split("+")[0].split("-")[0].split("."))
    except ValueError:
        return None


def challenge_evaluate(expected: dict[str, Any], measured: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(failures, review reasons). A failure: the resources offered are not free now. A review
    reason: the hardware itself differs from what the node registered with."""

    failures: list[str] = []
    review: list[str] = []
    tolerance = float(settings.NODE_CHALLENGE_TOLERANCE)
    version = _version_tuple(str(measured.get("agent_version") or ""))
    minimum = _version_tuple(expected["agent_version"]) or (0,)
    if version is None or version < minimum:
        failures.append(f"agent version {measured.get('agent_version')!r} is older than {expected['agent_version']}")
    if measured.get("cpu_cores", 0) < expected["cpu_cores"]:
        message = f"registered {expected['cpu_cores']} CPU cores, found {measured.get('cpu_cores', 0)}"
        failures.append(message)
        review.append(message)
    if measured.get("memory_gb", 0) < expected["memory_gb"]:
        message = f"registered {expected['memory_gb']} GB of memory, found {measured.get('memory_gb', 0)} GB"
        failures.append(message)
        review.append(message)
    if measured.get("memory_available_gb", 0) < tolerance * expected["memory_free_gb"]:
        failures.append(
            f"only {measured.get('memory_available_gb', 0)} GB of memory free; "
            f"{expected['memory_free_gb']} GB is offered"
        )
    if measured.get("storage_free_gb", 0) < tolerance * expected["storage_free_gb"]:
        failures.append(
            f"only {measured.get('storage_free_gb', 0)} GB of disk free; {expected['storage_free_gb']} GB is offered"
        )
    if expected["gpu_kind"] == "gpu":
        gpus = measured.get("gpus") or []
        if len(gpus) < expected["gpu_count"]:
            message = f"registered {expected['gpu_count']} GPU(s), found {len(gpus)}"
            failures.append(message)
            review.append(message)
        names = {gpu_model_slug(str(g.get("name", "")), g.get("memory_total_mib")) for g in gpus}
        if gpus and names != {expected["gpu_model"]}:
            message = f"registered as {expected['gpu_model']}, the GPUs report {', '.join(sorted(map(str, names)))}"
            failures.append(message)
            review.append(message)
        vram_mib = expected["vram_gb"] * 1024
        free = [
            g for g in gpus if g.get("memory_free_mib", 0) >= tolerance * min(g.get("memory_total_mib", 0), vram_mib)
        ]
        if len(free) < expected["gpus_free"]:
            failures.append(f"{len(free)} GPU(s) with free VRAM; {expected['gpus_free']} offered")
    return failures, review


def challenge_answer(*, node_id: int, response: dict[str, Any], now: datetime) -> str | None:
    """Judge one answer. Returns the new status, or None if there was no such pending challenge."""
    failures: list[str] = []
    review: list[str] = []
    with transaction.atomic():
        challenge = (
            NodeChallenge.objects.select_for_update()
            .filter(public_id=str(response.get("id", ""))[:32], node_id=node_id, status=ChallengeStatus.PENDING)
            .first()
        )
        if challenge is None:
            return None
        measured = response.get("measured") or {}
        if not hmac.compare_digest(str(response.get("nonce", "")), challenge.nonce):
            failures.append("the answer does not carry the challenge's nonce")
        elif now > challenge.expires_at:
            challenge.status = ChallengeStatus.MISSED
            failures.append("answered after the deadline")
        else:
            failures, review = challenge_evaluate(challenge.expected, measured)
        if challenge.status != ChallengeStatus.MISSED:
            challenge.status = ChallengeStatus.FAILED if failures else ChallengeStatus.PASSED
        challenge.answered_at = now
        challenge.measured = measured
        challenge.failure_reason = "; ".join(failures)[:2000]
        challenge.save(update_fields=["status", "answered_at", "measured", "failure_reason"])
        if failures:
            _penalise(node_id=node_id, at=now, reason=f"challenge {challenge.status}: {failures[0]}")
            public_id, reason = challenge.public_id, challenge.failure_reason
            transaction.on_commit(lambda: hooks.challenge_failed(node_id, public_id, reason))
        if review:
            _flag(node_id=node_id, at=now, reason="; ".join(review))
    return challenge.status


def _penalise(*, node_id: int, at: datetime, reason: str) -> None:
    """A failed or missed challenge counts as NODE_CHALLENGE_PENALTY_SECONDS of downtime, ending now."""
    penalty = timedelta(seconds=settings.NODE_CHALLENGE_PENALTY_SECONDS)
    if penalty:
        NodeOutage.objects.create(
            node_id=node_id, kind=OutageKind.CHALLENGE, started_at=at - penalty, ended_at=at, reason=reason[:200]
        )
    NodeEvent.objects.create(node_id=node_id, kind=NodeEventKind.CHALLENGE, at=at, message=reason[:300])


def _flag(*, node_id: int, at: datetime, reason: str) -> None:
    Node.objects.filter(id=node_id).update(needs_review=True, review_reason=reason[:2000])
    NodeEvent.objects.create(node_id=node_id, kind=NodeEventKind.FLAGGED, at=at, message=reason[:300])


def challenges_expire(*, now: datetime) -> int:
    """Pending challenges past their deadline become missed; online nodes are penalised for them."""
    missed = 0
    expired = list(
        NodeChallenge.objects.filter(status=ChallengeStatus.PENDING, expires_at__lt=now).values_list(
            "id", "node_id", "expires_at", "node__status", "node__in_maintenance"
        )[:5000]
    )
    for challenge_id, node_id, expires_at, node_status, maintenance in expired:
        with transaction.atomic():
            if not NodeChallenge.objects.filter(id=challenge_id, status=ChallengeStatus.PENDING).update(
                status=ChallengeStatus.MISSED, failure_reason="not answered in time"
            ):
                continue
            missed += 1
            # An offline node already loses the time; maintenance is excused.
            if node_status == NodeStatus.ONLINE and not maintenance:
                _penalise(node_id=node_id, at=expires_at, reason="challenge missed: not answered in time")
    return missed
