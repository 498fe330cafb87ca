"""Match commitments on chain (issue 21 part 5): each lease's commitment published to LeaseRegistry.

`commitments_publish` takes the leases whose commitment is not on chain yet, oldest first, and
records one `recordMany(leaseIds, commitments)` through chain.sender (purpose "commitments",
reference "commitments:<first lease id>-<last lease id>"); the leases point at that transaction row
in the same database transaction, so a crash never publishes a lease twice. The sender's beat task
sends it and reads its receipt; `commitments_reconcile` then marks the leases committed (the
transaction's hash and block), or, for a batch that failed (`recordMany` is all or nothing, so
one lease already on chain reverts it with AlreadyRecorded), reads `commitmentOf` of each lease:
the ones the chain holds with the same commitment are committed, the others are free for the next
batch (a lease the chain holds with another commitment is set aside with the problem).

The scheme is spheron_sdk.onchain's: leaseId = bytes32(uint256(lease.id)), the value the match
commitment's 32 bytes. No RPC call is made inside a database transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from spheron_sdk import onchain

from chain.evm.client import ChainUnavailable, rpc_url_for
from chain.keys import key_from_env
from chain.models import Chain, ChainTransaction, TxStatus
from chain.sender import transaction_record
from marketplace.models import Lease

logger = logging.getLogger(__name__)

PURPOSE = "commitments"
BATCH_LIMIT = 200
# Batches one beat pass records at most: a backlog (more than BATCH_LIMIT leases matched since the
# last pass) drains in one pass instead of one batch per interval; the sender sends them in order.
MAX_BATCHES_PER_RUN = 10
# A batch that ends in one of these never recorded its leases: each is looked up on chain.
DONE_WITHOUT_RECORD = (TxStatus.FAILED, TxStatus.REPLACED)


def chain_key() -> str:
    return getattr(settings, "COMMITMENTS_CHAIN_KEY", "base")


def recorder_key_env() -> str:
    return getattr(settings, "COMMITMENTS_RECORDER_KEY_ENV", "CHAIN_RECORDER_KEY")


def registry_address() -> str:
    """LEASE_REGISTRY_ADDRESS, or on a devnet where it is unset, LeaseRegistry's deterministic address
    for the devnet deployer (chain.evm.artifacts.deploy_all). Empty: publishing is off."""
    from eth_utils import to_checksum_address

    configured = getattr(settings, "LEASE_REGISTRY_ADDRESS", "")
    if configured:
        return to_checksum_address(configured)
    if settings.CHAIN_DEVNET:
        from chain.devnet import DEPLOYER
        from chain.evm.artifacts import predicted_addresses

        return predicted_addresses(DEPLOYER.address)["LeaseRegistry"]
    return ""


def record_many_calldata(pairs: list[tuple[int, str]]) -> str:
    """`recordMany(bytes32[] leaseIds, bytes32[] commitments)` for [(lease id, commitment hex)]."""
    from eth_abi import encode
    from eth_utils import function_signature_to_4byte_selector

    selector = function_signature_to_4byte_selector("recordMany(bytes32[],bytes32[])")
    lease_ids = [onchain.lease_key(lease_id) for lease_id, _ in pairs]
    commitments = [onchain.commitment_word(commitment) for _, commitment in pairs]
    return "0x" + (selector + encode(["bytes32[]", "bytes32[]"], [lease_ids, commitments])).hex()


def _pending():
    return Lease.objects.filter(
        commitment_tx__isnull=True, committed_at__isnull=True, commitment_problem="", order__match__isnull=False
    )


def _reference(first: int, last: int) -> str:
    """The batch's idempotency key. A batch that failed freed its leases, and the same range may come
    back: it gets the next free suffix, so it is not answered with the failed row."""
    base = f"{PURPOSE}:{first}-{last}"
    reference, attempt = base, 1
    while True:
        row = ChainTransaction.objects.filter(purpose=PURPOSE, reference=reference).only("status").first()
        if row is None or row.status not in DONE_WITHOUT_RECORD:
            return reference
        attempt += 1
        reference = f"{base}:{attempt}"


@dataclass
class PublishResult:
    tx_id: int | None = None
    leases: int = 0
    skipped: str = ""


def commitments_publish(*, limit: int = BATCH_LIMIT) -> PublishResult:
    """Records one batch of unpublished commitments (at most `limit`, oldest leases first) for the
    sender, and marks its leases with the transaction row, in one database transaction."""
    chain = Chain.objects.filter(key=chain_key(), enabled=True).first()
    registry = registry_address()
    if chain is None or chain.chain_id is None:
        return PublishResult(skipped="no enabled EVM chain row for COMMITMENTS_CHAIN_KEY")
    if not registry:
        return PublishResult(skipped="LEASE_REGISTRY_ADDRESS is not set")
    if not key_from_env(recorder_key_env()):  # the sender's key comes from the environment only
        return PublishResult(skipped=f"{recorder_key_env()} is not set")
    with transaction.atomic():
        rows = list(
            _pending()
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("id")
            .values_list("id", "order__match__commitment")[:limit]
        )
        if not rows:
            return PublishResult()
        tx = transaction_record(
            chain=chain,
            purpose=PURPOSE,
            reference=_reference(rows[0][0], rows[-1][0]),
            to=registry,
            data=record_many_calldata(rows),
            sender_key_env=recorder_key_env(),
        )
        Lease.objects.filter(id__in=[lease_id for lease_id, _ in rows], commitment_tx__isnull=True).update(
            commitment_tx=tx
        )
    return PublishResult(tx_id=tx.pk, leases=len(rows))


@dataclass
class ReconcileResult:
    committed: int = 0
    recognised: int = 0
    freed: int = 0
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)


def commitments_reconcile() -> ReconcileResult:
    """Leases whose batch the sender has settled: mined → committed with its hash and block; failed
    or replaced → each lease looked up on chain (committed if it holds the same commitment, freed if
    none, set aside if another)."""
    result = ReconcileResult()
    waiting = Lease.objects.filter(commitment_tx__isnull=False, committed_at__isnull=True, commitment_problem="")
    for tx in ChainTransaction.objects.filter(
        id__in=waiting.filter(commitment_tx__status=TxStatus.MINED).values("commitment_tx_id")
    ):
        result.committed += waiting.filter(commitment_tx=tx).update(
            committed_at=tx.mined_at or timezone.now(), commitment_tx_hash=tx.tx_hash, commitment_block=tx.receipt_block
        )
    failed = ChainTransaction.objects.filter(
        id__in=waiting.filter(commitment_tx__status__in=DONE_WITHOUT_RECORD).values("commitment_tx_id")
    ).select_related("chain")
    for tx in failed:
        leases = list(waiting.filter(commitment_tx=tx).values_list("id", "order__match__commitment"))
        try:
            held = _held_on_chain(tx, [lease_id for lease_id, _ in leases])
        except (ChainUnavailable, onchain.OnChainError) as exc:
            result.errors.append(f"tx {tx.pk}: {exc}")
            logger.warning("commitments: batch %s (%s) not looked up: %s", tx.pk, tx.reference, exc)
            continue
        same = [lease_id for lease_id, commitment in leases if held[lease_id] == "0x" + commitment.lower()]
        other = [lease_id for lease_id, _ in leases if held[lease_id] is not None and lease_id not in same]
        free = [lease_id for lease_id, _ in leases if held[lease_id] is None]
        with transaction.atomic():
            result.recognised += waiting.filter(id__in=same, commitment_tx=tx).update(committed_at=timezone.now())
            result.conflicts += waiting.filter(id__in=other, commitment_tx=tx).update(
                commitment_problem="LeaseRegistry holds another commitment for this lease"
            )
            result.freed += waiting.filter(id__in=free, commitment_tx=tx).update(commitment_tx=None)
        if other:
            logger.error("commitments: leases %s hold another commitment on chain", other)
    return result


def _held_on_chain(tx: ChainTransaction, lease_ids: list[int]) -> dict[int, str | None]:
    url = rpc_url_for(tx.chain)
    if not url:
        raise ChainUnavailable(f"No RPC URL for {tx.chain.key}: set CHAIN_{tx.chain.key.upper()}_RPC_URL.")
    return {
        lease_id: onchain.commitment_of(
            rpc_url=url, registry=tx.to, lease_id=lease_id, timeout=settings.CHAIN_RPC_TIMEOUT_SECONDS
        )
        for lease_id in lease_ids
    }


def commitments_run(*, limit: int = BATCH_LIMIT, max_batches: int = MAX_BATCHES_PER_RUN) -> dict[str, Any]:
    """The beat task's pass: settle what the sender settled, then record the next batches (full
    ones while the backlog lasts, up to `max_batches`)."""
    reconciled = commitments_reconcile()
    batches = [commitments_publish(limit=limit)]
    while batches[-1].leases == limit and len(batches) < max_batches:
        batches.append(commitments_publish(limit=limit))
    published = PublishResult(
        tx_id=batches[-1].tx_id or batches[0].tx_id,
        leases=sum(batch.leases for batch in batches),
        skipped=batches[0].skipped,
    )
    return {"reconciled": reconciled, "published": published, "batches": sum(1 for b in batches if b.leases)}


def lease_commitment_chain(lease: Lease | None) -> dict[str, Any] | None:
    """The proof's `chain` object (spheron_sdk's names, + tx_hash and block) once the lease's
    commitment is on chain, else None."""
    if lease is None or lease.committed_at is None or lease.commitment_tx_id is None:
        return None
    tx = lease.commitment_tx
    chain: dict[str, Any] = {
        "chain_id": tx.chain.chain_id,
        "registry": tx.to,
        "lease_id": lease.id,
        "tx_hash": lease.commitment_tx_hash or None,
        "block": lease.commitment_block,
    }
    if tx.chain.rpc_url:
        chain["rpc_url"] = tx.chain.rpc_url
    return chain
