"""The EVM watcher of one chain: read the receiver's `Deposit` logs from the cursor to the head in
bounded ranges, store them, count confirmations, and re-read each deposit's transaction once it has
`finality` confirmations (chain.ingest decides). Network calls happen here, between short
transactions, never inside one."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from chain import ingest
from chain.evm.client import EvmReader, TxDeposits, tx_deposits_many
from chain.models import Chain, Deposit, WatchCursor

logger = logging.getLogger(__name__)

MAX_ROUNDS = 5  # ranges read per run; a watcher far behind catches up over several runs


@dataclass
class WatchResult:
    chain: str
    head: int = 0
    from_block: int | None = None
    to_block: int | None = None
    stored: int = 0
    final: int = 0
    settled: int = 0
    reorged: int = 0


def _cursor(chain: Chain, head: int) -> WatchCursor:
    cursor = WatchCursor.objects.filter(chain=chain).first()
    if cursor is not None:
        return cursor
    # A new cursor reads the last range only: on a real chain, set it in the admin to the block
    # before the receiver was deployed to read everything since.
    start = max(-1, head - settings.CHAIN_SCAN_MAX_BLOCKS)
    try:
        with transaction.atomic():
            return WatchCursor.objects.create(chain=chain, last_block=start)
    except IntegrityError:  # another watcher created it first
        return WatchCursor.objects.get(chain=chain)


def evm_scan(chain: Chain, client: EvmReader, *, head: int, result: WatchResult, rounds: int = MAX_ROUNDS) -> None:
    cursor = _cursor(chain, head)
    last = cursor.last_block
    # Re-read a few blocks below the cursor: a reorg may have put a log into a block already read.
    rescan = min(chain.finality, settings.CHAIN_RESCAN_BLOCKS)
    start = max(0, last + 1 - rescan)
    for _ in range(rounds):
        if start > head:
            break
        end = min(head, max(last + 1, start + settings.CHAIN_SCAN_MAX_BLOCKS - 1))
        logs = client.deposit_logs(chain.receiver_address, start, end)
        result.stored += ingest.deposits_store(chain=chain, logs=logs, head=head)
        # Only forward: a slower watcher that read an older range never moves the cursor back.
        WatchCursor.objects.filter(chain=chain, last_block__lt=end).update(last_block=end)
        result.from_block = start if result.from_block is None else result.from_block
        result.to_block = end
        last, start = end, end + 1


def evm_finality(chain: Chain, client: EvmReader, *, head: int, result: WatchResult, ids=None) -> None:
    ingest.deposits_rate_pending(chain=chain)
    ingest.deposits_confirmations_update(chain=chain, head=head)
    due = ingest.deposits_due(chain=chain, head=head, ids=ids)
    if not due:
        return
    # One receipt per transaction, read in batches, before any write.
    txs = tx_deposits_many(client, [deposit.tx_hash for deposit in due], chain.receiver_address)
    standing = []  # the common case, decided together: the same block, the same event, a rate known
    for deposit in due:
        deposit.chain = chain
        tx = txs.get(deposit.tx_hash)
        if tx is not None and ingest.deposit_finality_stands(
            deposit=deposit,
            block_number=tx.block_number,
            block_hash=tx.block_hash,
            logs=tx.deposits,
            succeeded=tx.succeeded,
            head=head,
        ):
            standing.append(deposit)
            continue
        outcome = _apply(deposit, tx, head=head)
        result.final += outcome.final
        result.settled += outcome.settled
        result.reorged += outcome.reorged
        if outcome.moved:  # the transaction is in another block now: a new sighting to confirm
            result.stored += ingest.deposits_store(chain=chain, logs=outcome.moved, head=head)
    finalized = ingest.deposits_finalize(chain=chain, deposits=standing, head=head)
    result.final += finalized
    result.settled += finalized


def _apply(deposit: Deposit, tx: TxDeposits | None, *, head: int) -> ingest.FinalityOutcome:
    if tx is None:
        return ingest.deposit_finality_apply(
            deposit=deposit, block_number=None, block_hash=None, logs=None, succeeded=False, head=head
        )
    return ingest.deposit_finality_apply(
        deposit=deposit,
        block_number=tx.block_number,
        block_hash=tx.block_hash,
        logs=tx.deposits,
        succeeded=tx.succeeded,
        head=head,
    )


def evm_watch(chain: Chain, client: EvmReader, *, rounds: int = MAX_ROUNDS) -> WatchResult:
    result = WatchResult(chain=chain.key)
    result.head = client.head()
    evm_scan(chain, client, head=result.head, result=result, rounds=rounds)
    evm_finality(chain, client, head=result.head, result=result)
    return result


def evm_tx_check(chain: Chain, client: EvmReader, tx: TxDeposits) -> tuple[WatchResult, list[int]]:
    """A pasted transaction, read already: store its deposits and decide the due ones, by the same
    code as the watcher. Returns the deposits' ids."""
    result = WatchResult(chain=chain.key, head=client.head())
    result.stored += ingest.deposits_store(chain=chain, logs=tx.deposits, head=result.head)
    ids = list(
        Deposit.objects.filter(
            chain=chain, tx_hash=tx.tx_hash, log_index__in=[log.log_index for log in tx.deposits]
        ).values_list("id", flat=True)
    )
    evm_finality(chain, client, head=result.head, result=result, ids=ids)
    return result, ids
