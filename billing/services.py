"""Writes to the ledger. Every function here runs in one database transaction.

The rules: a transaction's entries sum to zero; users' available and reserved credits never go
below zero (what cannot be taken is recorded as debt); a repeated call with the same idempotency
key returns the first result and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from accounts.models import User
from billing.models import AccountKind, Hold, LedgerAccount, LedgerEntry, LedgerTransaction, TransactionKind
from core.db import update_by_id
from core.errors import ApplicationError
from core.money import format_usd

NON_NEGATIVE = {AccountKind.USER_AVAILABLE, AccountKind.USER_RESERVED}
NON_POSITIVE = {AccountKind.USER_DEBT}


def account_get(*, kind: str, user: User | None = None, key: str = "") -> LedgerAccount:
    """The account for (kind, owner, key), created on first use."""
    try:
        account, _ = LedgerAccount.objects.get_or_create(kind=kind, user=user, key=key)
    except IntegrityError:  # created concurrently by another transaction
        account = LedgerAccount.objects.get(kind=kind, user=user, key=key)
    return account


def accounts_get_many(*, kind: str, user_ids: Sequence[int | None], key: str = "") -> dict[int | None, LedgerAccount]:
    """`account_get` of many owners (user ids; None: the platform's) in three queries: {user id: account}."""
    wanted = set(user_ids)
    LedgerAccount.objects.bulk_create(
        [LedgerAccount(kind=kind, user_id=user_id, key=key) for user_id in wanted], ignore_conflicts=True
    )
    owners = Q(user_id__in=[u for u in wanted if u is not None])
    if None in wanted:
        owners |= Q(user__isnull=True)
    return {account.user_id: account for account in LedgerAccount.objects.filter(owners, kind=kind, key=key)}


def fee_for(amount: int, rate: Decimal) -> int:
    return int((Decimal(amount) * rate).to_integral_value(rounding=ROUND_HALF_UP))


@transaction.atomic
def transaction_post(
    *,
    kind: str,
    reference_type: str,
    reference_id: str,
    lines: Sequence[tuple[LedgerAccount, int]],
    idempotency_key: str | None = None,
    memo: str = "",
    created_by: User | None = None,
    reverses: LedgerTransaction | None = None,
) -> LedgerTransaction:
    """Post one balanced transaction, or return the one already posted under `idempotency_key`."""
    if idempotency_key is not None:
        existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    merged: dict[int, int] = {}
    for account, amount in lines:
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise TypeError("ledger amounts are integers of micro-USD")
        merged[account.id] = merged.get(account.id, 0) + amount
    merged = {account_id: amount for account_id, amount in merged.items() if amount}
    if sum(merged.values()) != 0:
        raise ValueError(f"unbalanced transaction: entries sum to {sum(merged.values())}")
    if not merged:
        raise ValueError("a transaction needs at least one non-zero entry")

    # Lock every touched account, always in id order so concurrent postings cannot deadlock.
    locked = {
        account.id: account
        for account in LedgerAccount.objects.select_for_update().filter(id__in=merged).order_by("id")
    }
    if idempotency_key is not None:
        # A duplicate that raced us here committed while we waited for the locks: it wins.
        existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    for account_id, amount in merged.items():
        account = locked[account_id]
        new_balance = account.balance + amount
        if account.kind in NON_NEGATIVE and new_balance < 0:
            raise ApplicationError(
                "Insufficient funds: the balance cannot cover this.",
                {"account": account.kind, "balance": account.balance, "needed": -amount},
                status=409,
            )
        if account.kind in NON_POSITIVE and new_balance > 0:
            raise ValueError("a debt account cannot go positive")

    try:
        with transaction.atomic():
            txn = LedgerTransaction.objects.create(
                kind=kind,
                reference_type=reference_type,
                reference_id=str(reference_id),
                idempotency_key=idempotency_key,
                memo=memo[:300],
                created_by=created_by,
                reverses=reverses,
            )
    except IntegrityError:
        # The same key posted concurrently on accounts we did not share a lock with.
        existing = (
            LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first() if idempotency_key else None
        )
        if existing is None:
            raise
        return existing
    _entries_write(txn, merged)
    return txn


def _entries_write(txn: LedgerTransaction, merged: dict[int, int]) -> None:
    """The entries and the cached balances of a transaction whose accounts are locked: two queries
    whatever the number of accounts (one UPDATE with a CASE per account, not one UPDATE each)."""
    LedgerEntry.objects.bulk_create(
        [LedgerEntry(transaction=txn, account_id=account_id, amount=amount) for account_id, amount in merged.items()]
    )
    _balances_add(merged)


def _balances_add(deltas: dict[int, int]) -> None:
    """Add to the cached balances of locked accounts: one UPDATE joined to the amounts."""
    update_by_id(LedgerAccount, "balance", deltas, add=True)


# --- Money in ------------------------------------------------------------------------------------
@transaction.atomic
def topup_credit(
    *,
    user: User,
    amount: int,
    clearing_kind: str = AccountKind.CLEARING_STRIPE,
    clearing_key: str = "",
    reference_type: str,
    reference_id: str,
    idempotency_key: str,
    memo: str = "",
) -> LedgerTransaction:
    """Credit money that arrived; any debt is repaid first."""
    if amount <= 0:
        raise ApplicationError("A top-up must be a positive amount.", {"field": "amount"})
    available = account_get(kind=AccountKind.USER_AVAILABLE, user=user)
    debt = account_get(kind=AccountKind.USER_DEBT, user=user)
    clearing = account_get(kind=clearing_kind, key=clearing_key)
    owed = -LedgerAccount.objects.select_for_update().get(id=debt.id).balance
    repay = min(owed, amount)
    lines = [(clearing, -amount), (available, amount - repay)]
    if repay:
        lines.append((debt, repay))
    return transaction_post(
        kind=TransactionKind.TOPUP,
        reference_type=reference_type,
        reference_id=reference_id,
        lines=lines,
        idempotency_key=idempotency_key,
        memo=memo or (f"Top-up; ${repay / 1e6:,.2f} repaid debt" if repay else "Top-up"),
    )


@transaction.atomic
def topup_reverse(
    *,
    topup: LedgerTransaction,
    amount: int,
    kind: str = TransactionKind.REFUND,
    idempotency_key: str,
    memo: str = "",
) -> LedgerTransaction:
    """Take back (part of) a top-up after a refund or a lost dispute.

    What the user's available credits cannot cover becomes debt, which blocks new deployments
    until a later top-up repays it. Reversals of one top-up never add up to more than it.
    """
    existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    if topup.kind != TransactionKind.TOPUP:
        raise ValueError("only top-ups can be reversed this way")
    if kind not in TOPUP_REVERSAL_KINDS:
        raise ValueError("a top-up is reversed by a refund or a lost dispute")
    if amount <= 0:
        raise ApplicationError("A refund must be a positive amount.", {"field": "amount"})
    LedgerTransaction.objects.select_for_update().get(id=topup.id)  # serialise reversals of one top-up
    clearing_entry = topup.entries.select_related("account").get(amount__lt=0)
    user = next(entry.account.user for entry in topup.entries.select_related("account__user") if entry.account.user_id)
    reversed_before = _topup_reversed(topup, clearing_entry.account)
    reversible = -clearing_entry.amount - reversed_before
    amount = min(amount, reversible)
    if amount <= 0:
        raise ApplicationError("This top-up was already reversed in full.", {"topup": topup.id}, status=409)
    # The debt account first, as hold_place and topup_credit do: one lock order per user.
    debt = account_get(kind=AccountKind.USER_DEBT, user=user)
    LedgerAccount.objects.select_for_update().get(id=debt.id)
    available = account_get(kind=AccountKind.USER_AVAILABLE, user=user)
    balance = LedgerAccount.objects.select_for_update().get(id=available.id).balance
    from_available = min(balance, amount)
    lines = [(clearing_entry.account, amount)]
    if from_available:
        lines.append((available, -from_available))
    if amount > from_available:
        lines.append((debt, -(amount - from_available)))
    return transaction_post(
        kind=kind,
        reference_type="topup",
        reference_id=str(topup.id),
        lines=lines,
        idempotency_key=idempotency_key,
        memo=memo,
    )


TOPUP_REVERSAL_KINDS = {TransactionKind.REFUND, TransactionKind.DISPUTE}


def _topup_reversed(topup: LedgerTransaction, clearing: LedgerAccount) -> int:
    """What was already taken back from `topup`: refunds and disputes, or an admin's reversal."""
    refunded = LedgerEntry.objects.filter(
        transaction__kind__in=TOPUP_REVERSAL_KINDS,
        transaction__reference_type="topup",
        transaction__reference_id=str(topup.id),
        account=clearing,
    ).aggregate(total=Sum("amount"))["total"]
    reversed_by_admin = LedgerEntry.objects.filter(transaction__reverses=topup, account=clearing).aggregate(
        total=Sum("amount")
    )["total"]
    return (refunded or 0) + (reversed_by_admin or 0)


# --- Holds ---------------------------------------------------------------------------------------
def user_debt(user: User) -> int:
    account = LedgerAccount.objects.filter(kind=AccountKind.USER_DEBT, user=user).first()
    return -account.balance if account else 0


def _owes_error(owed: int) -> ApplicationError:
    """Why no hold can take more while the user has debt (409)."""
    return ApplicationError(
        f"Your account owes ${owed / 1e6:,.2f} (a reversed payment). Top up to clear it first.",
        {"debt_micros": owed},
        status=409,
    )


@transaction.atomic
def hold_place(*, user: User, amount: int, reference_type: str, reference_id: str) -> Hold:
    """Reserve `amount` of the user's available credits (refused while the user has debt)."""
    if amount <= 0:
        raise ApplicationError("A hold must be a positive amount.", {"field": "amount"})
    existing = Hold.objects.filter(reference_type=reference_type, reference_id=str(reference_id)).first()
    if existing is not None:
        return existing
    debt = account_get(kind=AccountKind.USER_DEBT, user=user)
    owed = -LedgerAccount.objects.select_for_update().get(id=debt.id).balance
    # The debt row is the user's lock: a duplicate call that held it before us has committed now.
    existing = Hold.objects.filter(reference_type=reference_type, reference_id=str(reference_id)).first()
    if existing is not None:
        return existing
    if owed:
        raise _owes_error(owed)
    hold = Hold.objects.create(user=user, amount=amount, reference_type=reference_type, reference_id=str(reference_id))
    transaction_post(
        kind=TransactionKind.HOLD_PLACE,
        reference_type="hold",
        reference_id=str(hold.id),
        lines=[
            (account_get(kind=AccountKind.USER_AVAILABLE, user=user), -amount),
            (account_get(kind=AccountKind.USER_RESERVED, user=user), amount),
        ],
        idempotency_key=f"hold:{hold.id}:place",
        memo="Held until it is used; what is not used comes back",
    )
    return hold


def _locked_hold(hold: Hold) -> Hold:
    return Hold.objects.select_for_update().get(id=hold.id)


@transaction.atomic
def hold_capture(
    *,
    hold: Hold,
    amount: int,
    payee: User,
    fee_rate: Decimal,
    idempotency_key: str,
    memo: str = "",
) -> LedgerTransaction | None:
    """Charge `amount` from the hold: the payee's pending earnings get it less the platform fee."""
    return _hold_capture(
        hold=hold,
        amount=amount,
        payee=payee,
        fee=fee_for(amount, fee_rate),
        idempotency_key=idempotency_key,
        memo=memo,
    )


@transaction.atomic
def _hold_capture(
    *, hold: Hold, amount: int, payee: User, fee: int, idempotency_key: str, memo: str = ""
) -> LedgerTransaction | None:
    """`hold_capture` with the fee given in micro-USD (a meter rounds its fee over the whole rental)."""
    existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    hold = _locked_hold(hold)
    # A duplicate call that held the lock before us has committed by now: charge once, not twice.
    existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    if hold.status != Hold.Status.ACTIVE:
        raise ApplicationError("This hold is closed.", {"hold": hold.id}, status=409)
    if amount <= 0:
        return None
    if amount > hold.remaining:
        raise ApplicationError(
            "The hold does not cover this charge.", {"hold": hold.id, "remaining": hold.remaining}, status=409
        )
    if not 0 <= fee <= amount:
        raise ValueError(f"a fee of {fee} on a charge of {amount}")
    lines = [
        (account_get(kind=AccountKind.USER_RESERVED, user=hold.user), -amount),
        (account_get(kind=AccountKind.PROVIDER_PENDING, user=payee), amount - fee),
    ]
    if fee:
        lines.append((account_get(kind=AccountKind.PLATFORM_FEES), fee))
    txn = transaction_post(
        kind=TransactionKind.HOLD_CAPTURE,
        reference_type=hold.reference_type,
        reference_id=hold.reference_id,
        lines=lines,
        idempotency_key=idempotency_key,
        memo=memo,
    )
    Hold.objects.filter(id=hold.id).update(captured=F("captured") + amount)
    return txn


@transaction.atomic
def hold_release(*, hold: Hold) -> LedgerTransaction | None:
    """Return what is left of the hold to available credits and close it (idempotent)."""
    hold = _locked_hold(hold)
    if hold.status != Hold.Status.ACTIVE:
        return None
    remaining = hold.remaining
    txn = None
    if remaining:
        txn = transaction_post(
            kind=TransactionKind.HOLD_RELEASE,
            reference_type="hold",
            reference_id=str(hold.id),
            lines=[
                (account_get(kind=AccountKind.USER_RESERVED, user=hold.user), -remaining),
                (account_get(kind=AccountKind.USER_AVAILABLE, user=hold.user), remaining),
            ],
            idempotency_key=f"hold:{hold.id}:release",
            memo="The unused part of the hold, back in your balance",
        )
    Hold.objects.filter(id=hold.id).update(
        released=F("released") + remaining, status=Hold.Status.CLOSED, closed_at=timezone.now()
    )
    return txn


def hold_swap(*, hold: Hold, amount: int, reference_type: str, reference_id: str) -> Hold:
    """Close `hold` and hold `amount` for the same user under a new reference, as one ledger posting.

    What a release followed by a new hold would do, in one transaction of two entries (the
    difference between what `hold` had left and `amount`; none when they are equal) instead of two
    of two entries each: a deployment's worst-case hold becomes its lease's hold at the locked price.
    A repeated call finds `hold` closed and is refused, so nothing is held twice. Holding more than
    `hold` had left takes the rest from available credits, refused while the user has debt (as
    hold_place does).

    A batch of one (`hold_swaps`). No savepoint: every refusal is
    decided before the first write and raised after the atomic block, so a caller that catches it
    can go on with its transaction. A database error aborts the caller's transaction, as it would
    on PostgreSQL anyway.
    """
    (result,) = hold_swaps([HoldSwap(hold.id, amount, reference_type, str(reference_id))])
    if isinstance(result, ApplicationError):
        raise result
    return result


@dataclass(frozen=True)
class HoldSwap:
    """One swap of `hold_swaps`: close `hold`, hold `amount` under (reference_type, reference_id)."""

    hold_id: int
    amount: int
    reference_type: str
    reference_id: str


def hold_swaps(swaps: Sequence[HoldSwap]) -> list[Hold | ApplicationError]:
    """`hold_swap` for many holds at once (the matchmaker's batches): the same postings, one per
    swap whose amounts differ, written with a fixed number of queries whatever the number of swaps.

    Returns, in order, each swap's new hold, or the refusal `hold_swap` would have raised (a hold
    already closed, debt, too little available credit), for which nothing was written. Locks are
    taken in id order (the old holds, then the users' debt rows where a swap takes more, then the
    users' funds), so two batches cannot deadlock on them. No savepoint: a database error aborts
    the caller's transaction.
    """
    if not swaps:
        return []
    for swap in swaps:
        if swap.amount <= 0:
            raise ApplicationError("A hold must be a positive amount.", {"field": "amount"})
    with transaction.atomic(savepoint=False):
        return _hold_swaps(swaps)


def _hold_swaps(swaps: Sequence[HoldSwap]) -> list[Hold | ApplicationError]:
    old = {h.id: h for h in Hold.objects.select_for_update().filter(id__in={s.hold_id for s in swaps}).order_by("id")}
    results: list[Hold | ApplicationError | None] = [None] * len(swaps)
    seen: set[int] = set()
    for n, swap in enumerate(swaps):
        hold = old.get(swap.hold_id)
        if hold is None or hold.status != Hold.Status.ACTIVE:
            results[n] = ApplicationError("This hold is closed.", {"hold": swap.hold_id}, status=409)
        elif swap.hold_id in seen:  # only its first swap may close it
            results[n] = ApplicationError(
                "This hold is swapped twice in one batch.", {"hold": swap.hold_id}, status=409
            )
        seen.add(swap.hold_id)
    live = [n for n, result in enumerate(results) if result is None]
    takers = {old[swaps[n].hold_id].user_id for n in live if old[swaps[n].hold_id].remaining < swaps[n].amount}
    if takers:
        # Taking more than the old hold had left is refused while the user has debt (as hold_place).
        debts = LedgerAccount.objects.filter(kind=AccountKind.USER_DEBT, user_id__in=takers, key="")
        for user_id in sorted(takers - set(debts.values_list("user_id", flat=True))):
            account_get(kind=AccountKind.USER_DEBT, user=User(id=user_id))
        owed = {account.user_id: -account.balance for account in debts.select_for_update().order_by("id")}
        for n in live:
            hold = old[swaps[n].hold_id]
            if hold.remaining < swaps[n].amount and owed.get(hold.user_id):
                results[n] = _owes_error(owed[hold.user_id])
        live = [n for n in live if results[n] is None]
    movers = sorted({old[swaps[n].hold_id].user_id for n in live if old[swaps[n].hold_id].remaining != swaps[n].amount})
    funds = _users_funds_locked(movers) if movers else {}
    available = {user_id: accounts[AccountKind.USER_AVAILABLE].balance for user_id, accounts in funds.items()}
    for n in list(live):
        hold = old[swaps[n].hold_id]
        back = hold.remaining - swaps[n].amount
        if back < 0 and available[hold.user_id] + back < 0:
            results[n] = ApplicationError(
                "Insufficient funds: the balance cannot cover this.",
                {"account": AccountKind.USER_AVAILABLE, "balance": available[hold.user_id], "needed": -back},
                status=409,
            )
        elif back:
            available[hold.user_id] += back
    live = [n for n in live if results[n] is None]
    if not live:
        return results
    new = Hold.objects.bulk_create(
        [
            Hold(
                user_id=old[swaps[n].hold_id].user_id,
                amount=swaps[n].amount,
                reference_type=swaps[n].reference_type,
                reference_id=str(swaps[n].reference_id),
            )
            for n in live
        ]
    )
    moving = []
    for n, hold in zip(live, new, strict=True):
        results[n] = hold
        previous = old[swaps[n].hold_id]
        if previous.remaining != hold.amount:
            moving.append((previous, hold))
    if moving:
        txns = LedgerTransaction.objects.bulk_create(
            [
                LedgerTransaction(
                    kind=TransactionKind.HOLD_SWAP,
                    reference_type="hold",
                    reference_id=str(previous.id),
                    idempotency_key=f"hold:{previous.id}:swap",
                    # Words for the holder; the API and pages say what it was for
                    # (billing.references.transaction_description), the ledger keeps the two holds.
                    memo=_swap_memo(previous.remaining - hold.amount),
                )
                for previous, hold in moving
            ]
        )
        entries, deltas = [], {}
        for txn, (previous, hold) in zip(txns, moving, strict=True):
            back = previous.remaining - hold.amount
            accounts = funds[previous.user_id]
            reserved, available = accounts[AccountKind.USER_RESERVED], accounts[AccountKind.USER_AVAILABLE]
            for account, amount in ((reserved, -back), (available, back)):
                entries.append(LedgerEntry(transaction=txn, account_id=account.id, amount=amount))
                deltas[account.id] = deltas.get(account.id, 0) + amount
        LedgerEntry.objects.bulk_create(entries)
        _balances_add({account_id: amount for account_id, amount in deltas.items() if amount})
    Hold.objects.filter(id__in=[swaps[n].hold_id for n in live]).update(
        released=F("amount") - F("captured"), status=Hold.Status.CLOSED, closed_at=timezone.now()
    )
    return results


def _swap_memo(back: int) -> str:
    if back < 0:
        return f"Held {format_usd(-back, places=6)} more"
    return f"{format_usd(back, places=6)} of what was held back in your balance"


def _users_funds_locked(user_ids: list[int]) -> dict[int, dict[str, LedgerAccount]]:
    """Each user's available and reserved accounts, all locked in id order in one query (created
    first where missing)."""
    kinds = (AccountKind.USER_AVAILABLE, AccountKind.USER_RESERVED)

    def lock() -> dict[int, dict[str, LedgerAccount]]:
        found: dict[int, dict[str, LedgerAccount]] = {}
        accounts = LedgerAccount.objects.select_for_update().filter(user_id__in=user_ids, kind__in=kinds, key="")
        for account in accounts.order_by("id"):
            found.setdefault(account.user_id, {})[account.kind] = account
        return found

    found = lock()
    missing = [user_id for user_id in user_ids if len(found.get(user_id, ())) < len(kinds)]
    if missing:
        for user_id in missing:
            for kind in kinds:
                account_get(kind=kind, user=User(id=user_id))
        found = lock()
    return found


# --- Corrections ---------------------------------------------------------------------------------
@transaction.atomic
def transaction_reverse(*, txn: LedgerTransaction, memo: str, created_by: User | None = None) -> LedgerTransaction:
    """Post the mirror image of `txn` (refused if it would overdraw a user).

    Holds keep their own books (amount, captured, released), so a hold's placement or release is
    not reversible here, and reversing a usage charge refunds the renter's available credits: the
    hold it came from stays captured, so its reserved credits stay equal to what it still covers.
    """
    if not memo.strip():
        raise ApplicationError("A reversal needs a reason.", {"field": "memo"})
    # Lock and ask the database: `txn` may be an instance loaded before someone else reversed it.
    txn = LedgerTransaction.objects.select_for_update().get(id=txn.id)
    if LedgerTransaction.objects.filter(reverses=txn).exists():
        raise ApplicationError("This transaction was already reversed.", {"transaction": txn.id}, status=409)
    if txn.kind in (TransactionKind.HOLD_PLACE, TransactionKind.HOLD_RELEASE, TransactionKind.HOLD_SWAP):
        raise ApplicationError(
            "A hold is corrected by capturing or releasing it, not by reversing its transactions.",
            {"transaction": txn.id},
            status=409,
        )
    entries: Iterable[LedgerEntry] = txn.entries.select_related("account", "account__user")
    if txn.kind == TransactionKind.TOPUP:
        clearing = next(entry.account for entry in entries if entry.amount < 0)
        if _topup_reversed(txn, clearing):
            raise ApplicationError(
                "This top-up was already partly refunded; refund the rest instead.", {"transaction": txn.id}, status=409
            )
    lines = []
    for entry in entries:
        account = entry.account
        if txn.kind == TransactionKind.HOLD_CAPTURE and account.kind == AccountKind.USER_RESERVED:
            account = account_get(kind=AccountKind.USER_AVAILABLE, user=account.user)
        lines.append((account, -entry.amount))
    return transaction_post(
        kind=TransactionKind.REVERSAL,
        reference_type="ledger_transaction",
        reference_id=str(txn.id),
        lines=lines,
        idempotency_key=f"reversal:{txn.id}",
        memo=memo,
        created_by=created_by,
        reverses=txn,
    )


@transaction.atomic
def adjustment_post(
    *, user: User, amount: int, memo: str, created_by: User, idempotency_key: str | None = None
) -> LedgerTransaction:
    """Credit (positive) or debit (negative) a user's available credits, with a reason (once per
    `idempotency_key`, when given)."""
    if not memo.strip():
        raise ApplicationError("An adjustment needs a reason.", {"field": "memo"})
    if amount == 0:
        raise ApplicationError("An adjustment must not be zero.", {"field": "amount"})
    return transaction_post(
        kind=TransactionKind.ADJUSTMENT,
        reference_type="user",
        reference_id=str(user.id),
        lines=[
            (account_get(kind=AccountKind.USER_AVAILABLE, user=user), amount),
            (account_get(kind=AccountKind.CLEARING_ADJUSTMENTS), -amount),
        ],
        idempotency_key=idempotency_key,
        memo=memo,
        created_by=created_by,
    )
