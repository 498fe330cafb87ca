"""Storing what a watcher saw and deciding, at finality, whether it still stands. Shared by the
EVM watcher, a pasted hash, and (with the same `DepositLog`) the Solana scanner.

Two watchers may run at once: rows are inserted with INSERT … ON CONFLICT DO NOTHING under the
unique (chain, tx hash, log index), and every change of state is a conditional UPDATE on the state
read, so the second watcher's write changes nothing. No network call happens here: callers fetch
first, then come here with what they read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Value
from django.utils import timezone

from chain import rates
from chain.evm.events import DepositLog
from chain.models import OPEN_STATUSES, QUEUE_STATUSES, Chain, ChainToken, Deposit, DepositReference, DepositStatus

WAITING = (*OPEN_STATUSES, *QUEUE_STATUSES)  # not yet re-read at finality (final_at is null)


@dataclass
class _Quotes:
    """One quote per symbol per batch."""

    cache: dict[str, rates.Quote | None]

    def get(self, symbol: str) -> rates.Quote | None:
        if symbol not in self.cache:
            self.cache[symbol] = rates.quote(symbol)
        return self.cache[symbol]


def _rate(deposit: Deposit, token: ChainToken, quote: rates.Quote) -> None:
    deposit.usd_rate = quote.usd_per_unit
    deposit.rate_at = quote.at
    deposit.usd_micros = rates.usd_micros_for(deposit.amount, decimals=token.decimals, usd_per_unit=quote.usd_per_unit)
    deposit.fee_micros = rates.fee_micros_for(deposit.usd_micros, fee_bps=token.fee_bps)


def _classify(deposit: Deposit, chain: Chain, quotes: _Quotes) -> None:
    """Status and rate of a deposit seen for the first time (or rated late): the rate is the quote
    of this moment and stays with the deposit."""
    token = deposit.token
    if token is None:  # a token the registry does not accept: nothing to price it with
        deposit.status = DepositStatus.UNMATCHED
        return
    quote = quotes.get(token.symbol)
    if quote is not None:
        _rate(deposit, token, quote)
    if deposit.user_id is None:
        deposit.status = DepositStatus.UNMATCHED
    elif deposit.usd_micros is not None and deposit.usd_micros < max(chain.min_deposit_usd_micros, 1):
        deposit.status = DepositStatus.BELOW_MINIMUM
    else:  # matched; when no rate is known yet it waits, unrated, until there is one
        deposit.status = DepositStatus.SEEN


def _new_row(chain: Chain, log: DepositLog, *, head: int, tokens: dict[str, ChainToken], users: dict[str, int]):
    return Deposit(
        chain=chain,
        tx_hash=log.tx_hash,
        log_index=log.log_index,
        block_number=log.block_number,
        block_hash=log.block_hash,
        payer=log.payer,
        token=tokens.get(log.token),
        token_address=log.token,
        amount=Decimal(log.amount),
        account_ref=log.account_ref,
        user_id=users.get(log.account_ref),
        confirmations=max(0, head - log.block_number + 1),
        raw=log.as_raw(),
    )


def deposits_store(*, chain: Chain, logs: Sequence[DepositLog], head: int) -> int:
    """Store each log once under (chain, tx hash, log index); one seen again after a reorg took it
    away comes back as a new sighting. Returns how many rows were new or revived."""
    if not logs:
        return 0
    # A rescan reads the same logs run after run: leave the ones stored and standing alone, without
    # building rows or opening a transaction for them.
    known = {
        (tx_hash, index): status
        for tx_hash, index, status in Deposit.objects.filter(
            chain=chain, tx_hash__in={log.tx_hash for log in logs}
        ).values_list("tx_hash", "log_index", "status")
    }
    logs = [
        log for log in logs if known.get((log.tx_hash, log.log_index), DepositStatus.REORGED) == DepositStatus.REORGED
    ]
    if not logs:
        return 0
    tokens = {token.address.lower(): token for token in ChainToken.objects.filter(chain=chain, enabled=True)}
    refs = {log.account_ref for log in logs}
    users = dict(DepositReference.objects.filter(ref__in=refs).values_list("ref", "user_id"))
    quotes = _Quotes({})
    rows = []
    for log in logs:
        row = _new_row(chain, log, head=head, tokens=tokens, users=users)
        _classify(row, chain, quotes)
        rows.append(row)
    wanted = {(log.tx_hash, log.log_index) for log in logs}

    def present(status: str | None = None) -> dict[tuple[str, int], int]:
        rows = Deposit.objects.filter(chain=chain, tx_hash__in={log.tx_hash for log in logs})
        if status is not None:
            rows = rows.filter(status=status)
        found = {(tx_hash, index): pk for pk, tx_hash, index in rows.values_list("id", "tx_hash", "log_index")}
        return {key: pk for key, pk in found.items() if key in wanted}

    with transaction.atomic():
        before = len(present())
        Deposit.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
        stored = len(present()) - before
        reorged = present(DepositStatus.REORGED)
        for row in rows:
            pk = reorged.get((row.tx_hash, row.log_index))
            if pk is None:
                continue
            fields = {
                name: getattr(row, name)
                for name in (
                    "block_number", "block_hash", "payer", "token", "token_address", "amount", "account_ref",
                    "user_id", "status", "confirmations", "usd_rate", "rate_at", "usd_micros", "fee_micros", "raw",
                )
            }  # fmt: skip
            revived = Deposit.objects.filter(id=pk, status=DepositStatus.REORGED)
            stored += revived.update(**fields, seen_at=timezone.now())
    return stored


def deposits_rate_pending(*, chain: Chain) -> int:
    """Deposits seen while no fresh rate existed: rate them with the first quote there is."""
    pending = list(
        Deposit.objects.filter(
            chain=chain, usd_rate__isnull=True, token__isnull=False, final_at__isnull=True, status__in=WAITING
        ).select_related("token")[:500]
    )
    quotes = _Quotes({})
    rated = 0
    for deposit in pending:
        status = deposit.status
        _classify(deposit, chain, quotes)
        if deposit.usd_rate is None:
            continue
        if deposit.status == DepositStatus.SEEN and status == DepositStatus.CONFIRMING:
            deposit.status = DepositStatus.CONFIRMING
        rated += Deposit.objects.filter(id=deposit.id, usd_rate__isnull=True, status=status).update(
            usd_rate=deposit.usd_rate,
            rate_at=deposit.rate_at,
            usd_micros=deposit.usd_micros,
            fee_micros=deposit.fee_micros,
            status=deposit.status,
        )
    return rated


def deposits_confirmations_update(*, chain: Chain, head: int) -> None:
    waiting = Deposit.objects.filter(chain=chain, final_at__isnull=True, status__in=WAITING, block_number__lte=head)
    counted = Value(head + 1) - F("block_number")
    # Only rows whose count changed: a watcher runs again before the head moves, and thousands of
    # deposits may be waiting.
    waiting.exclude(confirmations=counted).update(confirmations=counted)
    waiting.filter(status=DepositStatus.SEEN, block_number__lt=head).update(status=DepositStatus.CONFIRMING)


def deposits_due(*, chain: Chain, head: int, limit: int = 500, ids: Iterable[int] | None = None) -> list[Deposit]:
    """Deposits with enough confirmations by their stored block to be re-read at finality."""
    due = Deposit.objects.filter(
        chain=chain, final_at__isnull=True, status__in=WAITING, block_number__lte=head - chain.finality + 1
    )
    if ids is not None:
        due = due.filter(id__in=list(ids))
    return list(due.order_by("id")[:limit])


@dataclass(frozen=True)
class FinalityOutcome:
    final: bool = False  # became FINAL (to be credited)
    settled: bool = False  # re-read at finality (final, or an admin-queue deposit now known to stand)
    reorged: bool = False
    moved: Sequence[DepositLog] = ()  # the transaction's deposits in the block it is in now


def _same_event(deposit: Deposit, log: DepositLog) -> bool:
    return (
        log.account_ref == deposit.account_ref
        and log.payer == deposit.payer
        and log.token == deposit.token_address
        and Decimal(log.amount) == deposit.amount
    )


def deposit_finality_stands(
    *, deposit: Deposit, block_number: int, block_hash: str, logs: Sequence[DepositLog], succeeded: bool, head: int
) -> bool:
    """Whether `deposit_finality_apply` would make this deposit FINAL (no write): its transaction
    succeeded in the block it was seen in, with the same event, `finality` confirmations, a
    matched deposit with a rate. Those are finalized together by `deposits_finalize`."""
    if not succeeded or block_hash != deposit.block_hash or block_number != deposit.block_number:
        return False
    if deposit.status not in OPEN_STATUSES or deposit.usd_rate is None:
        return False
    if head - block_number + 1 < deposit.chain.finality:
        return False
    event = next((log for log in logs if log.log_index == deposit.log_index), None)
    return event is not None and _same_event(deposit, event)


def deposits_finalize(*, chain: Chain, deposits: Sequence[Deposit], head: int) -> int:
    """Make FINAL, in one UPDATE, deposits `deposit_finality_stands` said stand (still waiting:
    another watcher's decision wins). Returns how many changed."""
    if not deposits:
        return 0
    return Deposit.objects.filter(
        chain=chain, id__in=[deposit.id for deposit in deposits], final_at__isnull=True, status__in=OPEN_STATUSES
    ).update(status=DepositStatus.FINAL, confirmations=Value(head + 1) - F("block_number"), final_at=timezone.now())


def deposit_finality_apply(
    *, deposit: Deposit, block_number: int | None, block_hash: str | None, logs: Sequence[DepositLog] | None,
    succeeded: bool, head: int,
) -> FinalityOutcome:  # fmt: skip
    """Decide a deposit whose transaction was just re-read (`block_*`, `logs`: what the chain says
    now; None when the transaction is gone). Gone, failed, in another block, or without this event:
    reorged, credited never. Still there with `finality` confirmations: final."""
    now = timezone.now()
    waiting = Deposit.objects.filter(id=deposit.id, final_at__isnull=True, status__in=WAITING)
    if block_hash is None or not succeeded or block_hash != deposit.block_hash:
        waiting.update(status=DepositStatus.REORGED, confirmations=0)
        moved = logs if block_hash is not None and succeeded and block_hash != deposit.block_hash else ()
        return FinalityOutcome(reorged=True, moved=moved or ())
    event = next((log for log in logs or () if log.log_index == deposit.log_index), None)
    if event is None or not _same_event(deposit, event):
        waiting.update(status=DepositStatus.REORGED, confirmations=0)
        return FinalityOutcome(reorged=True)
    confirmations = head - block_number + 1
    if confirmations < deposit.chain.finality:
        waiting.update(confirmations=max(confirmations, 0))
        return FinalityOutcome()
    if deposit.status in QUEUE_STATUSES:  # it stands; an operator decides what it is worth
        changed = waiting.filter(status=deposit.status).update(confirmations=confirmations, final_at=now)
        return FinalityOutcome(settled=bool(changed))
    if deposit.usd_rate is None:  # final on chain, but no rate was ever known: wait for one
        waiting.update(confirmations=confirmations)
        return FinalityOutcome()
    changed = waiting.filter(status__in=OPEN_STATUSES).update(
        status=DepositStatus.FINAL, confirmations=confirmations, final_at=now
    )
    return FinalityOutcome(final=bool(changed), settled=bool(changed))
