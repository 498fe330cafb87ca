"""Recompute a Spheron match from its published inputs: the scores, the winner and the commitment.

The server scores candidates with this very module, so anyone holding the match proof
(GET /api/v1/deployments/{id}/match-proof) can check that the node chosen is the one the
weights and the seed pick, and that the commitment is the SHA-256 of exactly those inputs.
Pure standard library: no Django, and no network unless verify_match is given an RPC URL
(then spheron_sdk.onchain reads the commitment recorded on chain).
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


_ONE, _ZERO, _SEVEN, _EIGHT = Decimal(1), Decimal(0), Decimal(7), Decimal(8)
_TWO_64 = Decimal(2**64)


def random_factor(seed: str, node_id: int) -> Decimal:
    """A uniform draw in [0, 1) per node, from the recorded seed: HMAC-SHA256(seed, node id)."""
    digest = hmac.digest(seed.encode(), str(node_id).encode(), "sha256")
    return _q(Decimal(int.from_bytes(digest[:8], "big")) / _TWO_64)


def factor_scores(candidates: list[dict[str, Any]], seed: str) -> list[dict[str, Decimal]]:
    """Each candidate's factors, normalised to [0, 1] across the candidates."""
    prices = [int(c["price_per_hour_micros"]) for c in candidates]
    stakes = [Decimal(str(c["stake"])) for c in candidates]
    distances = [c["distance_km"] for c in candidates if c.get("distance_km") is not None]
    low, high = (min(prices), max(prices)) if prices else (0, 0)
    spread = Decimal(high - low)
    top_stake = max(stakes) if stakes else _ZERO
    far = max(distances) if distances else 0
    far_d = Decimal(far)
    result = []
    for candidate, price, stake in zip(candidates, prices, stakes, strict=True):
        slashes = min(int(candidate.get("slashes", 0)), MAX_SLASHES)
        distance = candidate.get("distance_km")
        result.append(
            {
                "price": _q(_ONE - Decimal(price - low) / spread) if high > low else _ONE,
                "uptime": _q(Decimal(str(candidate["uptime_30d"]))),
                "reputation": _q(
                    (_EIGHT - int(candidate["trust_tier"])) / _SEVEN * (_ONE - Decimal(slashes) / MAX_SLASHES)
                ),
                "stake": _q(stake / top_stake) if top_stake > 0 else _ZERO,
                "proximity": _q(_ONE - Decimal(distance) / far_d) if distance is not None and far else _ONE,
                "fit": _q(Decimal(str(candidate["fit"]))),
                "random": random_factor(seed, int(candidate["node_id"])),
            }
        )
    return result


def ranked(candidates: list[dict[str, Any]], weights: dict[str, Any], seed: str) -> list[tuple[Decimal, int, dict]]:
    """(total score, node id, factors) of each candidate, best first (ties: lower node id). What
    `score_candidates` formats; the matchmaker picks from this and formats only what it keeps."""
    weight = [Decimal(str(weights.get(name, 0))) for name in FACTORS]
    rows = []
    for candidate, factors in zip(candidates, factor_scores(candidates, seed), strict=True):
        total = _ZERO
        for w, value in zip(weight, factors.values(), strict=True):  # FACTORS order
            total += w * value
        rows.append((_q(total), int(candidate["node_id"]), factors))
    rows.sort(key=lambda row: (-row[0], row[1]))
    return rows


def formatted(rows: list[tuple[Decimal, int, dict]]) -> list[dict[str, Any]]:
    """Rows of `ranked` as published: {"node_id", "total", "factors"} with decimal strings."""
    return [
        {"node_id": node_id, "total": str(total), "factors": {name: str(value) for name, value in factors.items()}}
        for total, node_id, factors in rows
    ]


def score_candidates(candidates: list[dict[str, Any]], weights: dict[str, Any], seed: str) -> list[dict[str, Any]]:
    """Candidates with their factors and total score, best first (ties: lower node id)."""
    return formatted(ranked(candidates, weights, seed))


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


def verify_match(
    proof: dict[str, Any],
    *,
    rpc_url: str | None = None,
    registry: str | None = None,
    lease_id: int | None = None,
    timeout: float = 10,
) -> dict[str, Any]:
    """Check a match proof: {"order_id", "spec_hash", "candidates", "weights", "seed", "winner",
    "commitment"}. Returns the recomputed winner and commitment and whether both agree.

    With an RPC URL (`rpc_url`, else the proof's `chain.rpc_url`), the lease's commitment is also
    read from the `LeaseRegistry` (`registry`/`lease_id`, else the proof's `chain.registry` and
    `chain.lease_id`; the proof's `chain.chain_id`, if any, must be the RPC's chain) and compared
    with the recomputed one: the result gains "on_chain" (see spheron_sdk.onchain.check_commitment)
    and `ok` is false if the chain holds no commitment for the lease or another one. An RPC that
    cannot answer raises spheron_sdk.onchain.OnChainError (a ValueError). Without an RPC URL,
    nothing touches the network."""
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
    result = {
        "winner": winner,
        "commitment": recomputed,
        "winner_ok": winner == proof["winner"],
        "commitment_ok": recomputed == proof.get("commitment"),
        "ok": winner == proof["winner"] and recomputed == proof.get("commitment"),
        "scores": scored,
    }
    chain = proof.get("chain") or {}
    rpc_url = rpc_url or chain.get("rpc_url")
    asked = any(value is not None for value in (rpc_url, registry, lease_id))
    if not asked:
        return result
    registry = registry or chain.get("registry")
    lease_id = lease_id if lease_id is not None else chain.get("lease_id")
    missing = [
        name for name, value in (("rpc_url", rpc_url), ("registry", registry), ("lease_id", lease_id)) if value is None
    ]
    if missing:
        raise ValueError(f"checking the commitment on chain needs {', '.join(missing)} (argument or proof's chain)")
    from spheron_sdk import onchain  # only here: the rest of this module needs no network library

    on_chain = onchain.check_commitment(
        commitment=recomputed,
        rpc_url=rpc_url,
        registry=registry,
        lease_id=lease_id,
        expected_chain_id=chain.get("chain_id"),
        timeout=timeout,
    )
    result["on_chain"] = on_chain
    result["ok"] = result["ok"] and on_chain["matches"]
    return result
