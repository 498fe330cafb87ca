"""The match's proof: the record of one decision (its candidates, weights, seed, winner, the top
scores and the commitment) and the document a renter checks with spheron_sdk.matching.verify_match."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from spheron_sdk import matching

from marketplace.deployments.commitments import lease_commitment_chain
from marketplace.models import Lease, MatchRecord, Order


def match_record(
    *,
    order: Order,
    candidates: list[dict[str, Any]],
    weights: dict[str, str],
    seed: str,
    winner: int,
    scored: list[tuple[Decimal, int, dict[str, Decimal]]],
    now: datetime,
) -> MatchRecord:
    """The (unsaved) record of one decision, with its commitment: the hash of the document that
    `match_proof` publishes."""
    document = matching.match_document(
        order_id=order.id, spec_hash=order.deployment.spec_hash, candidates=candidates,
        weights=weights, seed=seed, winner=winner,
    )  # fmt: skip
    return MatchRecord(
        order=order,
        seed=seed,
        weights=weights,
        candidates=candidates,
        scores=matching.formatted(scored[:10]),
        winner_node_id=winner,
        commitment=matching.commitment(document),
        candidate_count=len(candidates),
        created_at=now,
    )


def match_proof(record: MatchRecord) -> dict[str, Any]:
    """What a renter checks (`spheron_sdk.matching.verify_match`): the inputs, the winner, the
    commitment, and once it is on LeaseRegistry, where (`chain`: chain_id, registry, lease_id, tx_hash,
    block, and the chain's public rpc_url when known), so the SDK can check it there."""
    lease = Lease.objects.filter(order_id=record.order_id).select_related("commitment_tx__chain").first()
    proof = {
        "order_id": record.order_id,
        "spec_hash": record.order.deployment.spec_hash,
        "candidates": record.candidates,
        "weights": record.weights,
        "seed": record.seed,
        "winner": record.winner_node_id,
        "commitment": record.commitment,
        "algorithm": "spheron_sdk.matching v1: score = Σ weight × factor; factors normalised to [0, 1]",
    }
    chain = lease_commitment_chain(lease)
    if chain is not None:
        proof["chain"] = chain
    return proof
