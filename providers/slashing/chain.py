"""The beat pass (`slashes_run`, the beat task `providers.tasks.run_slashes`): decided on-chain
slashes and upheld appeals' refunds recorded for chain.sender, and the ones the sender (and the
stake indexer) settled reconciled: applied, returned or failed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from billing.deposit_pages import encode_call
from chain.keys import key_from_env
from chain.models import TxStatus
from chain.sender import transaction_record
from core import clock
from providers.models import (
    RefundStatus,
    Slash,
    SlashAppeal,
    SlashStatus,
    StakeCursor,
    StakeEvent,
    StakeEventKind,
    StakeSource,
)
from providers.slashing.appeals import _refund_record
from providers.stake_chain import stake_backfill_pending, staking_address, staking_chain

logger = logging.getLogger(__name__)

PURPOSE = "slash"


def slash_calldata(*, address: str, amount: int, reason_hash: str) -> str:
    """`slash(address provider, uint256 amount, bytes32 reasonHash)`."""
    return encode_call("SponStaking", "slash", [address, int(amount), bytes.fromhex(reason_hash.removeprefix("0x"))])


@dataclass
class SlashRunResult:
    recorded: int = 0
    applied: int = 0
    failed: int = 0
    waiting: str = ""  # why decided slashes were not recorded for sending
    errors: list[str] = field(default_factory=list)
    refunds_recorded: int = 0
    refunds_returned: int = 0
    refunds_failed: int = 0
    refunds_waiting: str = ""  # why upheld appeals' refunds were not recorded for sending


_told: set[str] = set()  # the reasons for waiting already logged by this process


def _wait(result: SlashRunResult, why: str) -> SlashRunResult:
    result.waiting = why
    if why not in _told:
        _told.add(why)
        logger.warning("slashes: decided slashes wait: %s", why)
    return result


def slashes_record(result: SlashRunResult | None = None) -> SlashRunResult:
    """Records the transaction of each decided on-chain slash for the sender (status sending), one
    database transaction per slash. Without the slasher key or the staking contract: they wait."""
    result = result or SlashRunResult()
    decided = Slash.objects.filter(status=SlashStatus.DECIDED, chain_tx__isnull=True).exclude(address="")
    if not decided.exists():
        return result
    key_env = settings.SLASHER_KEY_ENV
    try:
        key = key_from_env(key_env)
    except ImproperlyConfigured as exc:
        return _wait(result, str(exc))
    if not key:
        return _wait(result, f"{key_env} is not set")
    chain, contract = staking_chain(), staking_address()
    if chain is None or chain.chain_id is None or not contract:
        return _wait(result, "no staking contract is configured (STAKING_CHAIN_KEY, STAKING_CONTRACT_ADDRESS)")
    _told.clear()
    for slash_id in list(decided.order_by("id").values_list("id", flat=True)):
        with transaction.atomic():
            slash = (
                Slash.objects.select_for_update(skip_locked=True)
                .filter(id=slash_id, status=SlashStatus.DECIDED, chain_tx__isnull=True)
                .first()
            )
            if slash is None:
                continue  # another worker took it
            tx = transaction_record(
                chain=chain,
                purpose=PURPOSE,
                reference=f"{PURPOSE}:{slash.id}",
                to=contract,
                data=slash_calldata(address=slash.address, amount=int(slash.amount), reason_hash=slash.reason_hash),
                sender_key_env=key_env,
            )
            slash.chain_tx, slash.status = tx, SlashStatus.SENDING
            slash.save(update_fields=["chain_tx", "status", "updated_at"])
            result.recorded += 1
    return result


def slashes_reconcile(result: SlashRunResult | None = None) -> SlashRunResult:
    """Slashes whose transaction the sender settled: mined and its Slashed event mirrored → applied
    (the amount the contract took, the StakeEvent); failed or replaced → failed with the reason.
    A mined one whose event is not final yet waits for the indexer."""
    result = result or SlashRunResult()
    sending = Slash.objects.filter(status=SlashStatus.SENDING, chain_tx__isnull=False).select_related("chain_tx__chain")
    for slash in sending:
        tx = slash.chain_tx
        if tx.status == TxStatus.MINED:
            # The cursor before the event: the indexer commits a block's events before moving past it.
            read_past = _read_past(tx.chain.chain_id, tx.receipt_block) and not stake_backfill_pending(
                chain_id=tx.chain.chain_id, address=slash.address
            )
            event = (
                StakeEvent.objects.filter(
                    source=StakeSource.CHAIN,
                    kind=StakeEventKind.SLASH,
                    chain_id=tx.chain.chain_id,
                    tx_hash=tx.tx_hash.lower(),
                )
                .order_by("log_index")
                .first()
            )
            if event is None:
                if read_past:
                    # The indexer read the block and kept no event: the address is no longer linked
                    # (its events are ignored). Taken on chain, not counted here: say so.
                    result.applied += Slash.objects.filter(id=slash.id, status=SlashStatus.SENDING).update(
                        status=SlashStatus.APPLIED,
                        failure_reason=(
                            f"Mined, but its Slashed event was not mirrored: {slash.address} is no longer the "
                            "provider's linked stake address, so the stake counted here did not change."
                        ),
                        applied_at=clock.now(),
                        updated_at=clock.now(),
                    )
                continue
            result.applied += Slash.objects.filter(id=slash.id, status=SlashStatus.SENDING).update(
                status=SlashStatus.APPLIED,
                stake_event=event,
                amount_slashed=event.amount,
                applied_at=clock.now(),
                updated_at=clock.now(),
            )
        elif tx.status in (TxStatus.FAILED, TxStatus.REPLACED):
            why = tx.revert_reason or tx.error or f"the transaction was {tx.get_status_display().lower()}"
            if tx.status == TxStatus.REPLACED:
                why = f"replaced: {tx.error}" if tx.error else "replaced by another transaction with its nonce"
            result.failed += Slash.objects.filter(id=slash.id, status=SlashStatus.SENDING).update(
                status=SlashStatus.FAILED, failure_reason=why[:500], updated_at=clock.now()
            )
    return result


def _read_past(chain_id: int, block: int | None) -> bool:
    """Whether the stake indexer has read the staking contract's logs up to `block` on the chain."""
    cursor = StakeCursor.objects.filter(chain_id=chain_id).values_list("last_block", flat=True).first()
    return block is not None and cursor is not None and cursor >= block


def refunds_record(result: SlashRunResult | None = None) -> SlashRunResult:
    """Records the refund transfers that wait (upheld while the treasury key was missing)."""
    result = result or SlashRunResult()
    for appeal_id in list(
        SlashAppeal.objects.filter(refund_status=RefundStatus.WAITING).order_by("id").values_list("id", flat=True)
    ):
        with transaction.atomic():
            appeal = (
                SlashAppeal.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("slash__chain_tx__chain")
                .filter(id=appeal_id, refund_status=RefundStatus.WAITING, refund_tx__isnull=True)
                .first()
            )
            if appeal is None:
                continue
            why = _refund_record(appeal)
            appeal.save(update_fields=["refund_tx", "refund_status", "refund_note", "updated_at"])
        if why:
            result.refunds_waiting = why
            if why not in _told:
                _told.add(why)
                logger.warning("slashes: upheld appeals' refunds wait: %s", why)
            break  # the same reason for every one: try again on the next pass
        result.refunds_recorded += 1
    return result


def refunds_reconcile(result: SlashRunResult | None = None) -> SlashRunResult:
    """Refunds whose transfer the sender settled: mined → returned; failed or replaced → failed."""
    result = result or SlashRunResult()
    sending = SlashAppeal.objects.filter(refund_status=RefundStatus.SENDING, refund_tx__isnull=False).select_related(
        "refund_tx"
    )
    for appeal in sending:
        tx = appeal.refund_tx
        if tx.status == TxStatus.MINED:
            result.refunds_returned += SlashAppeal.objects.filter(
                id=appeal.id, refund_status=RefundStatus.SENDING
            ).update(refund_status=RefundStatus.RETURNED, refunded_at=clock.now(), updated_at=clock.now())
        elif tx.status in (TxStatus.FAILED, TxStatus.REPLACED):
            why = tx.revert_reason or tx.error or f"the transaction was {tx.get_status_display().lower()}"
            result.refunds_failed += SlashAppeal.objects.filter(
                id=appeal.id, refund_status=RefundStatus.SENDING
            ).update(
                refund_status=RefundStatus.FAILED,
                refund_note=f"The refund transfer failed: {why}. An operator must return it by hand."[:500],
                updated_at=clock.now(),
            )
    return result


def slashes_run() -> SlashRunResult:
    """The beat task's pass: settle what the sender and the stake indexer settled, then record the
    transactions of newly decided slashes; the same for the refunds of upheld appeals."""
    result = slashes_reconcile()
    result = slashes_record(result)
    refunds_reconcile(result)
    return refunds_record(result)
