"""Crypto deposits into the ledger: each final deposit credited once, at the USD rate recorded when
it was first seen, less its token's fee; and the admin queue (assign to a user, or mark refunded).

chain records what happened on chain (chain.models.Deposit); this module is where it becomes
money. One ledger transaction per deposit, under the idempotency key
`deposit:<chain>:<tx hash>:<log index>`: the gross from the chain's clearing account, the fee to
platform fees, the rest to the user (repaying any debt first, as a card top-up does). The deposit
turns `credited` with the transaction's id in the same database transaction, under its row lock.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from billing.models import AccountKind, LedgerAccount, LedgerTransaction, TransactionKind
from billing.references import Reference
from billing.services import account_get, transaction_post
from chain.models import QUEUE_STATUSES, Deposit, DepositStatus
from core.errors import ApplicationError
from core.money import format_usd

logger = logging.getLogger(__name__)

REFERENCE_TYPE = "deposit"


def idempotency_key(deposit: Deposit) -> str:
    return f"deposit:{deposit.chain.key}:{deposit.tx_hash}:{deposit.log_index}"


def _amount_words(deposit: Deposit) -> str:
    symbol = deposit.token.symbol if deposit.token_id else (deposit.token_address or "?")
    decimals = deposit.token.decimals if deposit.token_id else 0
    amount = deposit.amount.scaleb(-decimals).normalize() if decimals else deposit.amount
    return f"{amount:f} {symbol} on {deposit.chain.name}"


def _post(deposit: Deposit, *, user: User, memo: str, created_by: User | None = None) -> LedgerTransaction:
    gross, fee = deposit.usd_micros, deposit.fee_micros
    if gross is None or fee is None or gross <= 0 or not 0 <= fee <= gross:
        raise ApplicationError(
            "This deposit has no USD value to credit (no rate was recorded).", {"deposit": deposit.id}
        )
    debt = account_get(kind=AccountKind.USER_DEBT, user=user)
    owed = -LedgerAccount.objects.select_for_update().get(id=debt.id).balance  # the user's lock, as topup_credit
    credit = gross - fee
    repay = min(owed, credit)
    lines = [
        (account_get(kind=AccountKind.CLEARING_CHAIN, key=deposit.chain.key), -gross),
        (account_get(kind=AccountKind.USER_AVAILABLE, user=user), credit - repay),
    ]
    if repay:
        lines.append((debt, repay))
    if fee:
        lines.append((account_get(kind=AccountKind.PLATFORM_FEES), fee))
    return transaction_post(
        kind=TransactionKind.TOPUP,
        reference_type=REFERENCE_TYPE,
        reference_id=str(deposit.id),
        lines=lines,
        idempotency_key=idempotency_key(deposit),
        memo=memo + (f"; {format_usd(repay)} repaid debt" if repay else ""),
        created_by=created_by,
    )


def _locked(deposit_id: int) -> Deposit | None:
    # of=self: PostgreSQL cannot lock the nullable side of the outer joins to token and user.
    rows = Deposit.objects.select_for_update(of=("self",)).select_related("chain", "token", "user")
    return rows.filter(id=deposit_id).first()


def _mark_credited(deposit: Deposit, txn: LedgerTransaction, **extra) -> None:
    deposit.status = DepositStatus.CREDITED
    deposit.credited_txn_id = txn.id
    deposit.credited_at = timezone.now()
    for name, value in extra.items():
        setattr(deposit, name, value)
    deposit.save(update_fields=["status", "credited_txn_id", "credited_at", *extra])


@transaction.atomic
def deposit_credit(*, deposit_id: int) -> LedgerTransaction | None:
    """Credit one FINAL deposit to its user; None when it is not (or no longer) final."""
    deposit = _locked(deposit_id)
    if deposit is None or deposit.status != DepositStatus.FINAL or deposit.user is None:
        return None
    fee = f", {format_usd(deposit.fee_micros)} fee" if deposit.fee_micros else ""
    rate = f"${deposit.usd_rate.normalize():f}"
    memo = f"Crypto top-up: {_amount_words(deposit)} at {rate}{fee} (tx {deposit.tx_hash})"
    txn = _post(deposit, user=deposit.user, memo=memo)
    _mark_credited(deposit, txn)
    return txn


def deposits_credit_final(*, limit: int = 1000) -> int:
    """Credit every FINAL deposit (the watcher calls it right after; beat runs it as a backstop).
    Each deposit in its own transaction: one that fails is logged and left final for next time."""
    credited = 0
    ids = list(Deposit.objects.filter(status=DepositStatus.FINAL).order_by("id").values_list("id", flat=True)[:limit])
    for deposit_id in ids:
        try:
            credited += deposit_credit(deposit_id=deposit_id) is not None
        except ApplicationError as exc:
            logger.error("deposit %s not credited: %s", deposit_id, exc.message)
    return credited


# --- The admin queue ------------------------------------------------------------------------------
@transaction.atomic
def deposit_assign(*, deposit: Deposit, user: User, by: User, note: str = "") -> LedgerTransaction:
    """Credit an unmatched or below-minimum deposit to `user`, as `by` decided (named in the memo
    and as the transaction's creator). Only once the deposit has stood to finality."""
    locked = _locked(deposit.id)
    if locked is None or locked.status not in QUEUE_STATUSES:
        raise ApplicationError("Only an unmatched or below-minimum deposit can be assigned.", status=409)
    if locked.final_at is None:
        raise ApplicationError(
            "This deposit has not reached finality yet; assign it once it has.", {"deposit": locked.id}, status=409
        )
    if locked.token_id is None:
        raise ApplicationError(
            "This deposit is in a token the registry does not accept, so it has no USD value: refund it.",
            {"deposit": locked.id},
            status=409,
        )
    words = f"Crypto top-up assigned by {by.email}: {_amount_words(locked)} (tx {locked.tx_hash})"
    txn = _post(locked, user=user, memo=f"{words}: {note}" if note.strip() else words, created_by=by)
    _mark_credited(locked, txn, user=user, resolved_by=by, resolution_note=note[:300])
    return txn


@transaction.atomic
def deposit_mark_refunded(*, deposit: Deposit, by: User, note: str) -> Deposit:
    """Record that an operator sent a queued deposit back (on chain, outside this system)."""
    if not note.strip():
        raise ApplicationError("Say how it was refunded (e.g. the refund's transaction hash).", {"field": "note"})
    locked = _locked(deposit.id)
    if locked is None or locked.status not in QUEUE_STATUSES:
        raise ApplicationError("Only an unmatched or below-minimum deposit can be marked refunded.", status=409)
    locked.status = DepositStatus.REFUNDED
    locked.resolved_by = by
    locked.resolution_note = note[:300]
    locked.save(update_fields=["status", "resolved_by", "resolution_note"])
    return locked


def describe_deposits(ids: list[str], user) -> dict[str, Reference]:
    """The ledger's words for a deposit's transaction (billing.references): "Crypto deposit #3"."""
    found = Deposit.objects.filter(id__in=[int(i) for i in ids if i.isdigit()], user=user).select_related("chain")
    return {str(d.id): Reference(f"Crypto deposit #{d.id} ({d.chain.name})") for d in found}
