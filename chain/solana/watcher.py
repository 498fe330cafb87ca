"""The Solana watcher: SOL transfers to the treasury with the deposit reference in a Memo, read
through the JSON-RPC API (chain.solana.scan) and stored and decided by the same code as the EVM
logs (chain.ingest).

Mapping onto a `Deposit`: tx hash = the signature, log index = the transfer's instruction index,
block = the slot (block hash: `slot:<n>`, Solana has no reorg of a rooted slot to compare), payer,
amount in lamports, account reference = the memo (a reference is 0x + 64 hex; compared in lower
case; a transfer without a memo or with an unknown one goes to the unmatched queue).

Finality is the cluster's own `finalized` commitment, not a count of ours: a deposit is re-read
once it is `chain.finality` slots old and becomes final only when the RPC says its transaction is
finalized; one the RPC no longer knows was dropped before finality (reorged: nothing credited).
The scan's cursor is the signature of the newest stored deposit known final, so transfers not yet
final are read again on the next run.
"""

from __future__ import annotations

import logging
import re

from chain import ingest
from chain.evm.client import ChainUnavailable
from chain.evm.events import DepositLog
from chain.evm.watcher import WatchResult
from chain.models import Chain, Deposit
from chain.solana import scan

logger = logging.getLogger(__name__)

REFERENCE = re.compile(r"0x[0-9a-fA-F]{64}")


class SolanaUnavailable(ChainUnavailable):
    """The chain's RPC could not be reached or answered with an error."""


def _account_ref(memo: str | None) -> str:
    memo = (memo or "").strip()
    return memo.lower() if REFERENCE.fullmatch(memo) else memo[:100]


def deposit_log(transfer: scan.SolanaTransfer) -> DepositLog:
    return DepositLog(
        tx_hash=transfer.signature,
        log_index=transfer.instruction_index,
        block_number=transfer.slot,
        block_hash=f"slot:{transfer.slot}",
        emitter=transfer.recipient,
        account_ref=_account_ref(transfer.memo),
        payer=transfer.payer,
        token="",  # native SOL
        amount=transfer.lamports,
    )


def _cursor_signature(chain: Chain) -> str | None:
    newest_final = Deposit.objects.filter(chain=chain, final_at__isnull=False).order_by("-block_number", "-id").first()
    return newest_final.tx_hash if newest_final else None


def _head(chain: Chain) -> int:
    try:
        return scan.current_slot(chain.rpc_url)
    except scan.SolanaRpcError as error:
        raise SolanaUnavailable(str(error)) from error


def _decide(chain: Chain, deposit: Deposit, transfers: list[scan.SolanaTransfer], *, head: int, result: WatchResult):
    mine = next((t for t in transfers if t.instruction_index == deposit.log_index), None)
    if mine is None:  # the transaction is gone (dropped before finality) or no longer pays the treasury
        outcome = ingest.deposit_finality_apply(
            deposit=deposit, block_number=None, block_hash=None, logs=None, succeeded=False, head=head
        )
    elif not mine.finalized:
        return  # not rooted yet: read again next run
    else:
        outcome = ingest.deposit_finality_apply(
            deposit=deposit,
            block_number=mine.slot,
            block_hash=f"slot:{mine.slot}",
            logs=[deposit_log(t) for t in transfers],
            succeeded=True,
            head=max(head, mine.slot + chain.finality - 1),  # the cluster says final: count it so
        )
    result.final += outcome.final
    result.settled += outcome.settled
    result.reorged += outcome.reorged


def _finality(chain: Chain, *, head: int, result: WatchResult, ids=None) -> None:
    ingest.deposits_rate_pending(chain=chain)
    ingest.deposits_confirmations_update(chain=chain, head=head)
    for deposit in ingest.deposits_due(chain=chain, head=head, ids=ids):
        deposit.chain = chain
        try:
            transfers = scan.check_signature(chain.rpc_url, chain.treasury_address, deposit.tx_hash)
        except scan.SignatureNotFound:
            transfers = []
        except scan.SolanaRpcError as error:
            raise SolanaUnavailable(str(error)) from error
        _decide(chain, deposit, transfers, head=head, result=result)


def solana_watch(chain: Chain) -> WatchResult:
    """One run: transfers since the cursor stored, confirmations counted, due ones decided."""
    result = WatchResult(chain=chain.key)
    try:
        transfers = scan.scan_transfers(chain.rpc_url, chain.treasury_address, until_signature=_cursor_signature(chain))
    except scan.SolanaRpcError as error:
        raise SolanaUnavailable(str(error)) from error
    result.head = _head(chain)
    logs = [deposit_log(t) for t in transfers]
    result.stored += ingest.deposits_store(chain=chain, logs=logs, head=result.head)
    if logs:
        result.from_block = min(log.block_number for log in logs)
        result.to_block = max(log.block_number for log in logs)
    _finality(chain, head=result.head, result=result)
    return result


def solana_signature_check(chain: Chain, signature: str) -> tuple[WatchResult, list[int]]:
    """A pasted signature, checked at once by the watcher's code. Raises scan.InvalidSignature,
    scan.SignatureNotFound, scan.TransactionFailed, or SolanaUnavailable."""
    try:
        transfers = scan.check_signature(chain.rpc_url, chain.treasury_address, signature)
        head = scan.current_slot(chain.rpc_url)
    except (scan.InvalidSignature, scan.SignatureNotFound, scan.TransactionFailed):
        raise
    except scan.SolanaRpcError as error:
        raise SolanaUnavailable(str(error)) from error
    result = WatchResult(chain=chain.key, head=head)
    logs = [deposit_log(t) for t in transfers]
    result.stored += ingest.deposits_store(chain=chain, logs=logs, head=head)
    ids = list(
        Deposit.objects.filter(
            chain=chain, tx_hash=signature.strip(), log_index__in=[log.log_index for log in logs]
        ).values_list("id", flat=True)
    )
    _finality(chain, head=head, result=result, ids=ids)
    return result, ids
