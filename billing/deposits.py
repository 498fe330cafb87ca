"""Crypto deposits into the ledger: each final deposit credited once, at the USD rate recorded when
it was first seen, less its token's fee; and the admin queue (assign to a user, or mark refunded).

chain records what happened on chain (chain.models.Deposit); this module is where it becomes
money. One ledger transaction per deposit, under the idempotency key
`deposit:<chain>:<tx hash>:<log index>`: the gross from the chain's clearing account, the fee to
platform fees, the rest to the user (repaying any debt first, as a card top-up does). The deposit
turns `credited` with the transaction's id in the same database transaction, under its row lock.

The watcher's crediting (`deposits_credit_final`) posts those transactions for up to
`CREDIT_BATCH` deposits in one database transaction: the deposits and the accounts locked once,
in id order, and the rows written in bulk. When one deposit of a batch cannot be credited, the
batch is rolled back and its deposits are credited one by one, each in its own database
transaction, so only that one waits.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from billing.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction, TransactionKind
from billing.references import Reference
from billing.services import NON_NEGATIVE, NON_POSITIVE, account_get, transaction_post
from chain.models import QUEUE_STATUSES, Deposit, DepositStatus
from core.db import update_by_id
from core.errors import ApplicationError
from core.money import format_usd

logger = logging.getLogger(__name__)

REFERENCE_TYPE = "deposit"
CREDIT_BATCH = 250  # deposits credited per database transaction by deposits_credit_final


def idempotency_key(deposit: Deposit) -> str:
    return f"deposit:{deposit.chain.key}:{deposit.tx_hash}:{deposit.log_index}"


def _amount_words(deposit: Deposit) -> str:
    symbol = deposit.token.symbol if deposit.token_id else (deposit.token_address or "?")
    decimals = deposit.token.decimals if deposit.token_id else 0
    amount = deposit.amount.scaleb(-decimals).normalize() if decimals else deposit.amount
    return f"{amount:f} {symbol} on {deposit.chain.name}"


def _value(deposit: Deposit) -> tuple[int, int]:
    """(gross, fee) in micro-USD, or an ApplicationError when the deposit has no value to credit."""
    gross, fee = deposit.usd_micros, deposit.fee_micros
    if gross is None or fee is None or gross <= 0 or not 0 <= fee <= gross:
        raise ApplicationError(
            "This deposit has no USD value to credit (no rate was recorded).", {"deposit": deposit.id}
        )
    return gross, fee


def _credit_memo(deposit: Deposit) -> str:
    fee = f", {format_usd(deposit.fee_micros)} fee" if deposit.fee_micros else ""
    rate = f"${deposit.usd_rate.normalize():f}"
    return f"Crypto top-up: {_amount_words(deposit)} at {rate}{fee} (tx {deposit.tx_hash})"


def _repaid_words(repay: int) -> str:
    return f"; {format_usd(repay)} repaid debt" if repay else ""


def _post(deposit: Deposit, *, user: User, memo: str, created_by: User | None = None) -> LedgerTransaction:
    gross, fee = _value(deposit)
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
        memo=memo + _repaid_words(repay),
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
    txn = _post(deposit, user=deposit.user, memo=_credit_memo(deposit))
    _mark_credited(deposit, txn)
    return txn


def _user_accounts(kind: str, user_ids: set[int]) -> dict[int, LedgerAccount]:
    """One account of `kind` per user, created in bulk where missing (as account_get would)."""
    found = {a.user_id: a for a in LedgerAccount.objects.filter(kind=kind, user_id__in=user_ids, key="")}
    missing = user_ids - found.keys()
    if missing:
        LedgerAccount.objects.bulk_create(
            [LedgerAccount(kind=kind, user_id=user_id) for user_id in missing], ignore_conflicts=True
        )
        found.update({a.user_id: a for a in LedgerAccount.objects.filter(kind=kind, user_id__in=missing, key="")})
    return found


@transaction.atomic
def deposits_credit_batch(*, deposit_ids: list[int]) -> int:
    """Credit the FINAL deposits among `deposit_ids` in one database transaction: what
    `deposit_credit` does for each (the same ledger transaction, key, memo and debt repayment),
    with the deposits and accounts locked once and the rows written in bulk. Raises
    ApplicationError (and writes nothing) when one of them cannot be credited."""
    rows = Deposit.objects.select_for_update(of=("self",)).select_related("chain", "token", "user")
    deposits = list(rows.filter(id__in=deposit_ids, status=DepositStatus.FINAL, user__isnull=False).order_by("id"))
    if not deposits:
        return 0
    values = {deposit.id: _value(deposit) for deposit in deposits}
    user_ids = {deposit.user_id for deposit in deposits}
    available = _user_accounts(AccountKind.USER_AVAILABLE, user_ids)
    debts = _user_accounts(AccountKind.USER_DEBT, user_ids)
    clearing = {key: account_get(kind=AccountKind.CLEARING_CHAIN, key=key) for key in {d.chain.key for d in deposits}}
    fees = account_get(kind=AccountKind.PLATFORM_FEES)
    ids = sorted({a.id for a in (*available.values(), *debts.values(), *clearing.values(), fees)})
    locked = {a.id: a for a in LedgerAccount.objects.select_for_update().filter(id__in=ids).order_by("id")}

    keys = {deposit.id: idempotency_key(deposit) for deposit in deposits}
    # Already posted under its key (not expected while the deposit is FINAL): reused, as
    # transaction_post would return it.
    posted = dict(
        LedgerTransaction.objects.filter(idempotency_key__in=keys.values()).values_list("idempotency_key", "id")
    )
    owed = {user_id: -locked[debts[user_id].id].balance for user_id in user_ids}
    new: list[tuple[Deposit, LedgerTransaction, dict[int, int]]] = []
    for deposit in deposits:
        if keys[deposit.id] in posted:
            continue
        gross, fee = values[deposit.id]
        credit = gross - fee
        repay = min(owed[deposit.user_id], credit)
        owed[deposit.user_id] -= repay
        merged: dict[int, int] = {}
        for account, amount in (
            (clearing[deposit.chain.key], -gross),
            (available[deposit.user_id], credit - repay),
            (debts[deposit.user_id], repay),
            (fees, fee),
        ):
            if amount:
                merged[account.id] = merged.get(account.id, 0) + amount
        for account_id, amount in merged.items():
            account = locked[account_id]
            account.balance += amount
            if account.kind in NON_NEGATIVE and account.balance < 0:
                raise ApplicationError("Insufficient funds: the balance cannot cover this.", status=409)
            if account.kind in NON_POSITIVE and account.balance > 0:
                raise ValueError("a debt account cannot go positive")
        txn = LedgerTransaction(
            kind=TransactionKind.TOPUP,
            reference_type=REFERENCE_TYPE,
            reference_id=str(deposit.id),
            idempotency_key=keys[deposit.id],
            memo=(_credit_memo(deposit) + _repaid_words(repay))[:300],
        )
        new.append((deposit, txn, merged))

    LedgerTransaction.objects.bulk_create([txn for _, txn, _ in new])
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(transaction=txn, account_id=account_id, amount=amount)
            for _, txn, merged in new
            for account_id, amount in merged.items()
        ]
    )
    deltas: dict[int, int] = {}
    for _, _, merged in new:
        for account_id, amount in merged.items():
            deltas[account_id] = deltas.get(account_id, 0) + amount
    update_by_id(LedgerAccount, "balance", deltas, add=True)
    txn_ids = {deposit.id: txn.id for deposit, txn, _ in new}
    txn_ids.update({deposit.id: posted[keys[deposit.id]] for deposit in deposits if keys[deposit.id] in posted})
    update_by_id(Deposit, "credited_txn_id", txn_ids)
    Deposit.objects.filter(id__in=txn_ids).update(status=DepositStatus.CREDITED, credited_at=timezone.now())
    return len(deposits)


def deposits_credit_final(*, limit: int = 1000) -> int:
    """Credit every FINAL deposit (the watcher calls it right after; beat runs it as a backstop),
    `CREDIT_BATCH` to a database transaction. A batch with a deposit that cannot be credited is
    credited one deposit per transaction instead: that one is logged and left final for next time."""
    credited = 0
    ids = list(Deposit.objects.filter(status=DepositStatus.FINAL).order_by("id").values_list("id", flat=True)[:limit])
    for start in range(0, len(ids), CREDIT_BATCH):
        batch = ids[start : start + CREDIT_BATCH]
        try:
            credited += deposits_credit_batch(deposit_ids=batch)
            continue
        except ApplicationError:
            pass
        for deposit_id in batch:
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
