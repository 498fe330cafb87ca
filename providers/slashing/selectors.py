"""Reads of slashes: the provider's list, one slash of theirs, and the evidence it was decided on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from billing.models import UsageMeter
from providers.models import NodeChallenge, NodeEvent, ProviderProfile, Slash
from providers.slashing.policy import era_bounds, era_failed_challenges


def slash_list(*, provider: ProviderProfile, limit: int = 50) -> QuerySet[Slash]:
    """The provider's slashes, newest first, with their transactions."""
    return Slash.objects.filter(provider=provider).select_related(
        "chain_tx__chain", "stake_event", "appeal__refund_tx__chain"
    )[:limit]


def get_slash_for_provider(*, provider: ProviderProfile, slash_id: int) -> Slash:
    slash = Slash.objects.filter(provider=provider, id=slash_id).select_related("node").first()
    if slash is None:
        raise Http404("No such slash.")
    return slash


def slash_evidence(slash: Slash) -> dict[str, Any]:
    """What the provider can check a slash against: for a lease, its meter (price, start, charged
    until the last heartbeat) and the node's events over the downtime; for a challenge, the node's
    failed challenges of that era."""
    provider = slash.provider
    evidence: dict[str, Any] = {"kind": slash.evidence_type, "node": slash.node}
    if slash.evidence_type == "lease":
        meter = UsageMeter.objects.filter(
            reference_type="lease", reference_id=slash.evidence_id, payee_id=provider.user_id
        ).first()
        evidence["meter"] = meter
        if slash.node is not None and meter is not None and meter.closed_at is not None:
            evidence["events"] = list(
                NodeEvent.objects.filter(
                    node=slash.node,
                    at__gte=meter.closed_at - timedelta(minutes=1),
                    at__lte=slash.created_at + timedelta(minutes=1),
                ).order_by("at", "id")[:50]
            )
    elif slash.evidence_type == "challenge":
        challenge = (
            NodeChallenge.objects.filter(public_id=slash.evidence_id, node__provider=provider)
            .select_related("node")
            .first()
        )
        if challenge is not None:
            era_start, era_end = era_bounds(challenge.issued_at)
            evidence.update(
                {
                    "node": slash.node or challenge.node,
                    "era_start": era_start,
                    "era_end": era_end,
                    "challenges": list(
                        era_failed_challenges(node=challenge.node_id, era_start=era_start, era_end=era_end)[:100]
                    ),
                }
            )
    return evidence
