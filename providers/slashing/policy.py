"""The policy: failed liveness (issue 22, part 4), and why an era's rewards are forfeited.

A failed liveness challenge is one the agent answered and the answer failed: the resources were
not there, the nonce was wrong, or it came after the deadline (status failed, or missed with an
answer). Those are the ones providers.liveness reports through `hooks.challenge_failed`. A
challenge nobody answered (the node went silent, or ignored it) is counted as downtime by
liveness (NODE_CHALLENGE_PENALTY_SECONDS each), not here. A challenge belongs to the era (UTC day,
providers.uptime) it was issued in.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Q, QuerySet

from core.errors import ApplicationError
from providers.models import SPON_DECIMALS, ChallengeStatus, Node, NodeChallenge, NodeEvent, NodeEventKind, Slash
from providers.slashing.decide import MAX_REASON, slash_decide
from providers.uptime import ERA, last_era_end

logger = logging.getLogger(__name__)


LIVENESS_PREFIX = "liveness"


def _failed_liveness() -> Q:
    return Q(status=ChallengeStatus.FAILED) | Q(status=ChallengeStatus.MISSED, answered_at__isnull=False)


def era_bounds(at: datetime) -> tuple[datetime, datetime]:
    """The era (providers.uptime: 24 h from 00:00 UTC) that `at` falls in."""
    start = last_era_end(at)
    return start, start + ERA


def _era_token(era_start: datetime) -> str:
    return era_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def liveness_reference(*, node_id: int, era_start: datetime) -> str:
    return f"{LIVENESS_PREFIX}:{node_id}:{_era_token(era_start)}"


def era_failed_challenges(*, node: Node | int, era_start: datetime, era_end: datetime) -> QuerySet[NodeChallenge]:
    node_id = node if isinstance(node, int) else node.id
    return (
        NodeChallenge.objects.filter(node_id=node_id, issued_at__gte=era_start, issued_at__lt=era_end)
        .filter(_failed_liveness())
        .order_by("issued_at", "id")
    )


def liveness_failure_slash(node_id: int, challenge_id: str, reason: str) -> Slash | None:
    """providers.hooks' challenge-failure handler (after the answer's commit): the node's
    SLASH_LIVENESS_REPEATS-th failed challenge of an era decides one slash of SLASH_LIVENESS_SPON whole
    $SPON; more failures in the same era find the same reference and decide nothing more."""
    whole_spon = settings.SLASH_LIVENESS_SPON
    if whole_spon <= 0:
        return None
    node = Node.objects.select_related("provider").filter(id=node_id).first()
    challenge = NodeChallenge.objects.filter(node_id=node_id, public_id=challenge_id).first()
    if node is None or challenge is None or node.is_simulated:
        return None
    era_start, era_end = era_bounds(challenge.issued_at)
    failed = list(
        era_failed_challenges(node=node, era_start=era_start, era_end=era_end).values_list("public_id", flat=True)
    )
    repeats = settings.SLASH_LIVENESS_REPEATS
    if len(failed) < repeats:
        return None
    first_words = " ".join((reason or "").split())[:60]
    text = (
        f"Node {node.id} failed {len(failed)} liveness challenges in the era of {era_start:%Y-%m-%d} UTC "
        f"({repeats} slash {whole_spon} $SPON); last: {first_words}"
    )
    try:
        return slash_decide(
            provider=node.provider,
            amount_base_units=whole_spon * 10**SPON_DECIMALS,
            reason=text[:MAX_REASON],
            reference=liveness_reference(node_id=node.id, era_start=era_start),
            evidence_type="challenge",
            evidence_id=challenge.public_id,
            node=node,
        )
    except ApplicationError as exc:  # never fail the heartbeat that carried the answer
        logger.error("node %s: the liveness slash was not decided: %s", node.id, exc.message)
        return None


def era_forfeit_reason(node: Node | int, era_start: datetime, era_end: datetime) -> str:
    """Why the node's rewards for the era [era_start, era_end) are forfeited, or "" when they are
    not: resources that differ from the node's registration (a liveness answer flagged it for review:
    spoofed resources), or any failed liveness challenge of the era (as defined above)."""
    node_id = node if isinstance(node, int) else node.id
    return era_forfeit_reasons([node_id], era_start, era_end).get(node_id, "")


def era_forfeit_reasons(node_ids: list[int], era_start: datetime, era_end: datetime) -> dict[int, str]:
    """`era_forfeit_reason` of many nodes in two queries: {node id: reason} of the forfeited ones.
    The queries read the ids' range (no list of thousands of ids), the rows of other nodes skipped."""
    wanted = set(node_ids)
    if not wanted:
        return {}
    lo, hi = min(wanted), max(wanted)
    flagged: dict[int, tuple[datetime, str]] = {}
    rows = (
        NodeEvent.objects.filter(node_id__in=node_ids, kind=NodeEventKind.FLAGGED, at__gte=era_start, at__lt=era_end)
        .exclude(message__startswith="review cleared")
        .order_by("node_id", "at", "id")
        .values_list("node_id", "at", "message")
    )
    for node_id, at, message in rows:
        if node_id in wanted:
            flagged.setdefault(node_id, (at, message))
    failed: dict[int, list[tuple[str, datetime, str]]] = {}
    rows = (
        NodeChallenge.objects.filter(node_id__gte=lo, node_id__lte=hi, issued_at__gte=era_start, issued_at__lt=era_end)
        .filter(_failed_liveness())
        .order_by("node_id", "issued_at", "id")
        .values_list("node_id", "public_id", "issued_at", "failure_reason")
    )
    for node_id, public_id, issued_at, why in rows:
        if node_id in wanted:
            failed.setdefault(node_id, []).append((public_id, issued_at, why))
    reasons: dict[int, str] = {}
    for node_id in set(flagged) | set(failed):
        parts = []
        if node_id in flagged:
            at, message = flagged[node_id]
            parts.append(f"spoofed resources: {message} (at {at:%H:%M:%S} UTC)")
        if node_id in failed:
            count = len(failed[node_id])
            public_id, issued_at, why = failed[node_id][0]
            noun = "challenge" if count == 1 else "challenges"
            why = " ".join((why or "").split())[:120]
            parts.append(f"{count} failed liveness {noun} (first {public_id} at {issued_at:%H:%M:%S} UTC: {why})")
        reasons[node_id] = "; ".join(parts)
    return reasons
