"""Recompute a Spheron match from its published inputs: the scores, the winner and the commitment.

The server scores candidates with this very module, so anyone holding the match proof
(GET /api/v1/deployments/{id}/match-proof) can check that the node chosen is the one the
weights and the seed pick, and that the commitment is the SHA-256 of exactly those inputs.
Pure standard library: no Django, no network.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

FACTORS = ("price", "uptime", "reputation", "stake", "proximity", "fit", "random")
PLACES = Decimal("0.000001")
MAX_SLASHES = 5  # this many past slashes take reputation to zero
DOCUMENT_VERSION = 1


def _q(value: Decimal) -> Decimal:
    return value.quantize(PLACES, rounding=ROUND_HALF_EVEN)


def canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def random_factor(seed: str, node_id: int) -> Decimal:
    """A uniform draw in [0, 1) per node, from the recorded seed: HMAC-SHA256(seed, node id)."""
    digest = hmac.new(seed.encode(), str(node_id).encode(), hashlib.sha256).digest()
    return _q(Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64))


def factor_scores(candidates: list[dict[str, Any]], seed: str) -> list[dict[str, Decimal]]:
    """Each candidate's factors, normalised to [0, 1] across the candidates."""
    prices = [int(c["price_per_hour_micros"]) for c in candidates]
    stakes = [Decimal(str(c["stake"])) for c in candidates]
    distances = [c["distance_km"] for c in candidates if c.get("distance_km") is not None]
    low, high = (min(prices), max(prices)) if prices else (0, 0)
    top_stake = max(stakes) if stakes else Decimal(0)
    far = max(distances) if distances else 0
    result = []
    for candidate, price, stake in zip(candidates, prices, stakes, strict=True):
        slashes = min(int(candidate.get("slashes", 0)), MAX_SLASHES)
        distance = candidate.get("distance_km")
        result.append(
            {
                "price": _q(Decimal(1) - Decimal(price - low) / Decimal(high - low)) if high > low else Decimal(1),
                "uptime": _q(Decimal(str(candidate["uptime_30d"]))),
                "reputation": _q(
                    Decimal(8 - int(candidate["trust_tier"]))
                    / Decimal(7)
                    * (Decimal(1) - Decimal(slashes) / MAX_SLASHES)
                ),
                "stake": _q(stake / top_stake) if top_stake > 0 else Decimal(0),
                "proximity": _q(Decimal(1) - Decimal(distance) / Decimal(far))
                if distance is not None and far
                else Decimal(1),
                "fit": _q(Decimal(str(candidate["fit"]))),
                "random": random_factor(seed, int(candidate["node_id"])),
            }
        )
    return result


def score_candidates(candidates: list[dict[str, Any]], weights: dict[str, Any], seed: str) -> list[dict[str, Any]]:
    """Candidates with their factors and total score, best first (ties: lower node id)."""
    weight = {name: Decimal(str(weights.get(name, 0))) for name in FACTORS}
    scored = []
    for candidate, factors in zip(candidates, factor_scores(candidates, seed), strict=True):
        total = _q(sum((weight[name] * factors[name] for name in FACTORS), Decimal(0)))
        scored.append(
            {
                "node_id": int(candidate["node_id"]),
                "total": str(total),
                "factors": {name: str(value) for name, value in factors.items()},
            }
        )
    scored.sort(key=lambda row: (-Decimal(row["total"]), row["node_id"]))
    return scored


def match_document(
    *, order_id: int, spec_hash: str, candidates: list[dict[str, Any]], weights: dict[str, Any], seed: str, winner: int
) -> dict[str, Any]:
    return {
        "version": DOCUMENT_VERSION,
        "order_id": order_id,
        "spec_hash": spec_hash,
        "candidates": candidates,
        "weights": {name: str(weights[name]) for name in sorted(weights)},
        "seed": seed,
        "winner": winner,
    }


def commitment(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def verify_match(proof: dict[str, Any]) -> dict[str, Any]:
    """Check a match proof: {"order_id", "spec_hash", "candidates", "weights", "seed", "winner",
    "commitment"}. Returns the recomputed winner and commitment and whether both agree."""
    scored = score_candidates(proof["candidates"], proof["weights"], proof["seed"])
    winner = scored[0]["node_id"] if scored else None
    document = match_document(
        order_id=proof["order_id"],
        spec_hash=proof["spec_hash"],
        candidates=proof["candidates"],
        weights=proof["weights"],
        seed=proof["seed"],
        winner=proof["winner"],
    )
    recomputed = commitment(document)
    return {
        "winner": winner,
        "commitment": recomputed,
        "winner_ok": winner == proof["winner"],
        "commitment_ok": recomputed == proof.get("commitment"),
        "ok": winner == proof["winner"] and recomputed == proof.get("commitment"),
        "scores": scored,
    }
