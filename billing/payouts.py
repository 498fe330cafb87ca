"""Provider earnings and payouts paid on chain (issue 21 part 6).

A provider asks for settled earnings to be paid to their linked payout address (a WalletLink of
purpose "payout", proved by signing: accounts.wallets) on an enabled EVM chain, in its native coin
or in $SPON where the chain has SponToken. A request earmarks part of the settled balance: the sum
of open requests (requested, approved, sending) never exceeds it. Up to PAYOUT_APPROVAL_THRESHOLD_USD
it is approved at once; above, it waits for an admin (approve or reject, with a reason).

`payouts_run` (the beat task billing.tasks.run_payouts) then, for each approved payout, quotes the
token's rate (chain.rates; none or stale: it waits and says why), works out the amount in base units
(rounded down: never more than owed) and, in one database transaction, stores rate and amount,
records the transfer for chain.sender (purpose "payout", reference "payout:<id>", from the hot wallet
whose key is in the environment variable PAYOUT_KEY_ENV names) and marks the payout sending. The
sender's beat task signs, sends and reads the receipt; the next pass here settles the payout: mined →
paid, with the ledger transaction (settled earnings → the chain's payouts clearing account) posted in
the same database transaction; failed → failed with the sender's reason, the earmark released and
nothing posted. The sender's (purpose, reference) key and the status checks here make a retry pay
once. No RPC call is made here at all.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from accounts.models import User, WalletPurpose
from accounts.wallets import wallet_current
from billing.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PayoutRequest,
    TransactionKind,
)
from billing.services import account_get, transaction_post
from billing.statements import NO_ACCOUNT, account_ids
from chain.keys import key_from_env
from chain.models import Chain, ChainKind, ChainToken, TxStatus
from chain.rates import quote_or_reason
from chain.selectors import chains_enabled
from chain.sender import transaction_record
from core.errors import ApplicationError
from core.money import format_usd, usd_to_micros

logger = logging.getLogger(__name__)

EARNINGS_KINDS = (AccountKind.PROVIDER_PENDING, AccountKind.PROVIDER_SETTLED)
OPEN_STATUSES = (PayoutRequest.Status.REQUESTED, PayoutRequest.Status.APPROVED, PayoutRequest.Status.SENDING)
PURPOSE = "payout"
NATIVE = "native"
SPON = "SPON"
BATCH_LIMIT = 100
CHAIN_KEY = re.compile(r"\A[a-z0-9_-]{1,20}\Z")  # a slug: nothing else is looked up (NUL bytes…)
_TRANSFER_SELECTOR = "a9059cbb"  # transfer(address,uint256)


# --- Chains and tokens a payout can use --------------------------------------------------------
def payout_chains() -> list[Chain]:
    """The enabled EVM chains (with their enabled tokens prefetched), in registry order."""
    return [chain for chain in chains_enabled() if chain.kind == ChainKind.EVM and chain.chain_id is not None]


def spon_token(chain: Chain) -> ChainToken | None:
    """The chain's $SPON row, where the chain has SponToken (the row's address is the chain's)."""
    if not chain.spon_token_address:
        return None
    return (
        ChainToken.objects.filter(chain=chain, symbol=SPON, enabled=True, address__iexact=chain.spon_token_address)
        .order_by("id")
        .first()
    )


def _chain_clean(chain: Chain | str | None) -> Chain:
    if isinstance(chain, Chain):
        found = chain
    else:
        key = (chain or "").strip() if isinstance(chain, str) else ""
        if not key:
            raise ApplicationError("Choose the chain to be paid on.", {"field": "chain"})
        found = Chain.objects.filter(key=key).first() if CHAIN_KEY.match(key) else None
        if found is None:
            raise ApplicationError(f"There is no chain {key!r}.", {"field": "chain"})
    if found.kind != ChainKind.EVM or found.chain_id is None:
        raise ApplicationError(
            f"Payouts are paid on EVM chains; {found.name} is not one. Choose an EVM chain.", {"field": "chain"}
        )
    if not found.enabled:
        raise ApplicationError(f"{found.name} is not enabled for payouts at the moment.", {"field": "chain"})
    return found


def _token_clean(chain: Chain, token: str | None) -> ChainToken:
    choice = (token or "").strip() if isinstance(token, str) else ""
    if choice.lower() in (NATIVE, chain.native_symbol.lower()):
        row = ChainToken.objects.filter(chain=chain, address="", enabled=True).order_by("id").first()
        if row is None:
            raise ApplicationError(f"{chain.name}'s native coin cannot be paid out now.", {"field": "token"})
        return row
    if choice.upper().removeprefix("$") == SPON:
        row = spon_token(chain)
        if row is None:
            raise ApplicationError(
                f"$SPON is not on {chain.name}: choose {chain.native_symbol}, or a chain with $SPON.",
                {"field": "token"},
            )
        return row
    raise ApplicationError(
        f"Choose the token to be paid in: {chain.native_symbol} (the chain's native coin) or $SPON.",
        {"field": "token"},
    )


def _micros(usd) -> int:
    return usd_to_micros(Decimal(usd))


def approval_threshold_micros() -> int:
    return _micros(settings.PAYOUT_APPROVAL_THRESHOLD_USD)


def minimum_micros() -> int:
    return _micros(settings.PAYOUT_MIN_USD)


def no_payout_wallet_message() -> str:
    return f"Link a payout address first: sign in with your wallet on {reverse('account_wallets')}."


# --- Requests ---------------------------------------------------------------------------------
@transaction.atomic
def payout_request_create(*, user: User, amount: int, chain: Chain | str, token: str) -> PayoutRequest:
    """Ask for `amount` micro-USD of settled earnings to be paid to the user's linked payout address
    on `chain` (a key or the row) in `token` ("native", the native symbol, or "SPON")."""
    if not user.is_provider:
        raise ApplicationError("Only providers have earnings to pay out.", status=403)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ApplicationError("Enter an amount above zero.", {"field": "amount"})
    minimum = minimum_micros()
    if amount < minimum:
        raise ApplicationError(
            f"The smallest payout is {format_usd(minimum, places=6)}.", {"field": "amount", "minimum_micros": minimum}
        )
    chain_row = _chain_clean(chain)
    token_row = _token_clean(chain_row, token)
    link = wallet_current(user=user)[WalletPurpose.PAYOUT]
    if link is None:
        raise ApplicationError(
            no_payout_wallet_message(), {"field": "wallet", "link": reverse("account_wallets")}, status=409
        )
    settled_account = account_get(kind=AccountKind.PROVIDER_SETTLED, user=user)
    # The row lock serialises this user's requests, so two at once cannot both spend the same dollars.
    settled = LedgerAccount.objects.select_for_update().get(id=settled_account.id).balance
    requested = payouts_outstanding(user=user)
    payable = max(settled - requested, 0)
    if amount > payable:
        raise ApplicationError(
            f"You can request at most {format_usd(payable, places=6)}: your settled earnings"
            + (f" less {format_usd(requested, places=6)} already requested." if requested else "."),
            {"field": "amount", "payable_micros": payable},
            status=409,
        )
    needs_approval = amount > approval_threshold_micros()
    now = timezone.now()
    return PayoutRequest.objects.create(
        user=user,
        amount=amount,
        destination=link.address,
        wallet_link=link,
        chain=chain_row,
        token=token_row,
        token_symbol=token_row.symbol,
        needs_approval=needs_approval,
        status=PayoutRequest.Status.REQUESTED if needs_approval else PayoutRequest.Status.APPROVED,
        approved_at=None if needs_approval else now,
    )


def payout_approve(*, payout: PayoutRequest, admin: User) -> PayoutRequest:
    """An admin approves a payout that waits for approval; the next pass sends it."""
    if payout.chain_id is None or payout.token_id is None:
        raise ApplicationError(
            f"Payout #{payout.pk} was requested before payouts were paid on chain (no chain or token): "
            "reject it and ask the provider for a new request.",
            status=409,
        )
    updated = PayoutRequest.objects.filter(pk=payout.pk, status=PayoutRequest.Status.REQUESTED).update(
        status=PayoutRequest.Status.APPROVED, approved_by=admin, approved_at=timezone.now(), updated_at=timezone.now()
    )
    payout.refresh_from_db()
    if not updated:
        raise ApplicationError(
            f"Payout #{payout.pk} is {payout.get_status_display().lower()}, not waiting for approval.", status=409
        )
    return payout


def payout_reject(*, payout: PayoutRequest, admin: User, reason: str) -> PayoutRequest:
    """An admin rejects a payout not sent yet (waiting, or approved and not recorded): its earmark
    is released, nothing is posted."""
    reason = " ".join((reason or "").replace("\x00", "").split())
    if not reason:
        raise ApplicationError("Give the reason for the rejection.", {"field": "reason"})
    updated = PayoutRequest.objects.filter(
        pk=payout.pk,
        status__in=(PayoutRequest.Status.REQUESTED, PayoutRequest.Status.APPROVED),
        chain_transaction__isnull=True,
    ).update(
        status=PayoutRequest.Status.REJECTED,
        failure_reason=f"Rejected by {admin.email}: {reason}"[:500],
        updated_at=timezone.now(),
    )
    payout.refresh_from_db()
    if not updated:
        raise ApplicationError(
            f"Payout #{payout.pk} is {payout.get_status_display().lower()}: only a payout not sent yet is rejected.",
            status=409,
        )
    return payout


# --- Paying -----------------------------------------------------------------------------------
def token_amount_for(usd_micros: int, *, decimals: int, usd_per_unit: Decimal) -> int:
    """Base units worth `usd_micros` at `usd_per_unit`, rounded down (never pay more than owed).
    Integers only: the rate is exact at its 12 decimal places, and amounts pass 28 digits."""
    scale = 10**12
    with localcontext() as context:
        context.prec = 100  # exact: a rate has at most 30 digits
        rate_scaled = int(usd_per_unit * scale)
    if rate_scaled <= 0:
        raise ValueError("a rate must be positive")
    return (usd_micros * 10**decimals * scale) // (rate_scaled * 1_000_000)


def transfer_calldata(to: str, amount: int) -> str:
    """ERC-20 `transfer(address to, uint256 amount)`."""
    from eth_abi import encode

    return "0x" + _TRANSFER_SELECTOR + encode(["address", "uint256"], [to, amount]).hex()


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log a reason to wait once per process, not on every pass."""
    if message not in _warned:
        _warned.add(message)
        logger.warning("payouts: %s", message)


def _wait(payout_id: int, reason: str) -> None:
    PayoutRequest.objects.filter(pk=payout_id, status=PayoutRequest.Status.APPROVED).exclude(
        waiting_reason=reason[:300]
    ).update(waiting_reason=reason[:300], updated_at=timezone.now())


def _hot_wallet_missing() -> str:
    """Why the hot wallet cannot sign ("" when its key is in the environment)."""
    name = settings.PAYOUT_KEY_ENV
    try:
        key = key_from_env(name)
    except ImproperlyConfigured as exc:
        return f"The payout wallet's key is refused: {exc}"
    if not key:
        return f"The payout wallet's key is not set ({name}): payouts wait until it is."
    return ""


def _fail(payout_id: int, reason: str, *, statuses=(PayoutRequest.Status.APPROVED,)) -> int:
    return PayoutRequest.objects.filter(pk=payout_id, status__in=statuses).update(
        status=PayoutRequest.Status.FAILED, failure_reason=reason[:500], waiting_reason="", updated_at=timezone.now()
    )


@dataclass
class RecordResult:
    recorded: int = 0
    waiting: dict[int, str] = field(default_factory=dict)
    failed: int = 0


def payouts_record(*, limit: int = BATCH_LIMIT) -> RecordResult:
    """Approved payouts without a transaction: rate and amount stored, the transfer recorded for the
    sender and the payout marked sending, in one database transaction each."""
    result = RecordResult()
    due = list(
        PayoutRequest.objects.filter(
            status=PayoutRequest.Status.APPROVED, chain_transaction__isnull=True, chain__isnull=False
        )
        .select_related("chain", "token")
        .order_by("id")[:limit]
    )
    if not due:
        return result
    missing_key = _hot_wallet_missing()
    if missing_key:
        _warn_once(missing_key)
        for payout in due:
            _wait(payout.pk, missing_key)
            result.waiting[payout.pk] = missing_key
        return result
    for payout in due:
        token = payout.token
        if token is None or not token.enabled or token.chain_id != payout.chain_id:
            result.failed += _fail(payout.pk, f"The token {payout.token_symbol or '?'} is no longer paid out.")
            continue
        quoted = quote_or_reason(token.symbol)
        if quoted.quote is None:
            _warn_once(quoted.reason)
            _wait(payout.pk, quoted.reason)
            result.waiting[payout.pk] = quoted.reason
            continue
        amount = token_amount_for(payout.amount, decimals=token.decimals, usd_per_unit=quoted.quote.usd_per_unit)
        if amount <= 0:
            result.failed += _fail(payout.pk, "The amount is worth less than one base unit of the token.")
            continue
        if token.is_native:
            to, value, data = payout.destination, amount, "0x"
        else:
            to, value, data = token.address, 0, transfer_calldata(payout.destination, amount)
        try:
            with transaction.atomic():
                locked = PayoutRequest.objects.select_for_update().get(pk=payout.pk)
                if locked.status != PayoutRequest.Status.APPROVED or locked.chain_transaction_id is not None:
                    continue  # another pass got here first, or an admin rejected it meanwhile
                chain_tx = transaction_record(
                    chain=payout.chain,
                    purpose=PURPOSE,
                    reference=f"{PURPOSE}:{payout.pk}",
                    to=to,
                    value=value,
                    data=data,
                    sender_key_env=settings.PAYOUT_KEY_ENV,
                )
                locked.usd_rate = quoted.quote.usd_per_unit
                locked.rate_at = quoted.quote.at
                locked.token_amount = amount
                locked.chain_transaction = chain_tx
                locked.status = PayoutRequest.Status.SENDING
                locked.waiting_reason = ""
                locked.save(
                    update_fields=[
                        "usd_rate",
                        "rate_at",
                        "token_amount",
                        "chain_transaction",
                        "status",
                        "waiting_reason",
                        "updated_at",
                    ]
                )
        except ImproperlyConfigured as exc:  # the key vanished or was refused between the check and here
            _warn_once(str(exc))
            _wait(payout.pk, str(exc))
            result.waiting[payout.pk] = str(exc)
            continue
        result.recorded += 1
    return result


@dataclass
class ReconcileResult:
    paid: int = 0
    failed: int = 0
    stuck: int = 0


def _post_paid(payout_id: int) -> bool:
    """Mined: paid, and the ledger transaction posted and linked, in one database transaction."""
    with transaction.atomic():
        payout = PayoutRequest.objects.select_for_update().get(pk=payout_id)  # the related rows: no lock
        if payout.status != PayoutRequest.Status.SENDING:
            return False
        tx = payout.chain_transaction
        amount_shown = token_amount_text(payout)
        txn = transaction_post(
            kind=TransactionKind.PAYOUT,
            reference_type="payout",
            reference_id=str(payout.pk),
            lines=[
                (account_get(kind=AccountKind.PROVIDER_SETTLED, user=payout.user), -payout.amount),
                (account_get(kind=AccountKind.CLEARING_PAYOUTS, key=payout.chain.key), payout.amount),
            ],
            idempotency_key=f"payout:{payout.pk}",
            memo=f"Payout #{payout.pk}: {amount_shown} on {payout.chain.name} to {payout.destination}, tx {tx.tx_hash}",
        )
        payout.status = PayoutRequest.Status.PAID
        payout.ledger_transaction = txn
        payout.paid_at = tx.mined_at or timezone.now()
        payout.waiting_reason = ""
        payout.save(update_fields=["status", "ledger_transaction", "paid_at", "waiting_reason", "updated_at"])
    return True


def payouts_reconcile(*, limit: int = 500) -> ReconcileResult:
    """Payouts being sent whose transaction the sender settled: paid (ledger posted) or failed
    (reason kept, earmark released). A stuck transaction leaves the payout sending."""
    result = ReconcileResult()
    sending = (
        PayoutRequest.objects.filter(status=PayoutRequest.Status.SENDING)
        .exclude(chain_transaction__status__in=(TxStatus.RECORDED, TxStatus.SENT))
        .select_related("chain_transaction")
        .order_by("id")[:limit]
    )
    for payout in sending:
        tx = payout.chain_transaction
        if tx.status == TxStatus.MINED:
            result.paid += _post_paid(payout.pk)
        elif tx.status in (TxStatus.FAILED, TxStatus.REPLACED):
            reason = tx.revert_reason or tx.error or tx.get_status_display()
            result.failed += _fail(
                payout.pk, f"The transaction failed: {reason}", statuses=(PayoutRequest.Status.SENDING,)
            )
        elif tx.status == TxStatus.STUCK:
            result.stuck += 1
    return result


def payouts_run() -> dict[str, object]:
    """The beat task's pass: settle what the sender settled, then record what is approved."""
    reconciled = payouts_reconcile()
    recorded = payouts_record()
    return {"reconciled": reconciled, "recorded": recorded}


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 3000.000000000000 -> "3000"."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def token_amount_text(payout: PayoutRequest) -> str:
    """ "0.0041 ETH" (exact, trailing zeros dropped), or "" before the amount is worked out."""
    if payout.token_amount is None or payout.token_id is None:
        return ""
    with localcontext() as context:
        context.prec = 100  # exact: a uint256 has at most 78 digits
        value = Decimal(int(payout.token_amount)).scaleb(-payout.token.decimals)
    return f"{_plain(value)} {payout.token_symbol}"


@dataclass(frozen=True)
class PayoutRow:
    """A payout as the earnings page shows it."""

    id: int
    created_at: object
    amount: int
    state: str
    status: str
    chain_name: str
    token_symbol: str
    token_amount: str
    rate_text: str  # "3000" (USD per whole token), "" before it is recorded
    rate_at: object
    destination: str
    tx_hash: str
    tx_url: str
    note: str  # why it waits, failed or was rejected


def _state(payout: PayoutRequest) -> tuple[str, str]:
    tx = payout.chain_transaction
    status = PayoutRequest.Status
    if payout.status == status.REQUESTED:
        return ("Waiting for approval" if payout.needs_approval else "Requested"), ""
    if payout.status == status.APPROVED:
        return "Approved, sending soon", payout.waiting_reason
    if payout.status == status.SENDING:
        if tx is not None and tx.status == TxStatus.STUCK:
            return "Sending (stuck: an operator re-sends it)", ""
        return "Sending", ""
    return payout.get_status_display(), payout.failure_reason


def payout_rows(*, user: User, limit: int = 20) -> list[PayoutRow]:
    """The user's latest payouts, newest first, with their state, amount in the token at its rate
    and transaction link (the chain's explorer, or the bare hash where it has none)."""
    payouts = (
        PayoutRequest.objects.filter(user=user)
        .select_related("chain", "token", "chain_transaction")
        .order_by("-created_at", "-id")[:limit]
    )
    rows = []
    for payout in payouts:
        tx = payout.chain_transaction
        tx_hash = tx.tx_hash if tx is not None else ""
        state, note = _state(payout)
        rows.append(
            PayoutRow(
                id=payout.pk,
                created_at=payout.created_at,
                amount=payout.amount,
                state=state,
                status=payout.status,
                chain_name=payout.chain.name if payout.chain_id else "",
                token_symbol=payout.token_symbol,
                token_amount=token_amount_text(payout),
                rate_text=_plain(payout.usd_rate) if payout.usd_rate is not None else "",
                rate_at=payout.rate_at,
                destination=payout.destination,
                tx_hash=tx_hash,
                tx_url=payout.chain.explorer_url(tx_hash) if tx_hash and payout.chain_id else "",
                note=note,
            )
        )
    return rows


# --- Provider earnings ---------------------------------------------------------------------
@dataclass(frozen=True)
class Earnings:
    pending: int
    settled: int
    requested: int  # open payout requests: not yet paid, failed or rejected

    @property
    def total(self) -> int:
        return self.pending + self.settled

    @property
    def payable(self) -> int:
        """Settled earnings not already asked for."""
        return max(self.settled - self.requested, 0)


def payouts_outstanding(*, user: User) -> int:
    """What the user's open payouts (waiting, approved, being sent) earmark of settled earnings."""
    return (
        PayoutRequest.objects.filter(user=user, status__in=OPEN_STATUSES).aggregate(total=Sum("amount"))["total"] or 0
    )


def provider_earnings(*, user: User) -> Earnings:
    balances = dict(LedgerAccount.objects.filter(user=user, kind__in=EARNINGS_KINDS).values_list("kind", "balance"))
    return Earnings(
        pending=balances.get(AccountKind.PROVIDER_PENDING, 0),
        settled=balances.get(AccountKind.PROVIDER_SETTLED, 0),
        requested=payouts_outstanding(user=user),
    )


def earnings_transactions(*, user: User) -> QuerySet:
    """Transactions that credited or moved the provider's earnings, newest first: for each, what
    the renter was charged (gross), the platform fee, and the change of pending and settled."""
    ids = account_ids(user, EARNINGS_KINDS)
    pending = ids.get(AccountKind.PROVIDER_PENDING, NO_ACCOUNT)
    settled = ids.get(AccountKind.PROVIDER_SETTLED, NO_ACCOUNT)
    all_entries = LedgerEntry.objects.filter(transaction=OuterRef("pk")).order_by().values("transaction")
    gross = all_entries.filter(amount__gt=0).annotate(total=Sum("amount")).values("total")
    fee = all_entries.filter(account__kind=AccountKind.PLATFORM_FEES).annotate(total=Sum("amount")).values("total")
    return (
        LedgerTransaction.objects.filter(entries__account_id__in=[pending, settled])
        .annotate(
            pending=Coalesce(Sum("entries__amount", filter=Q(entries__account_id=pending)), 0),
            settled=Coalesce(Sum("entries__amount", filter=Q(entries__account_id=settled)), 0),
            gross=Coalesce(Subquery(gross), 0),
            fee=Coalesce(Subquery(fee), 0),
        )
        .values(
            "id", "kind", "created_at", "memo", "reference_type", "reference_id", "pending", "settled", "gross", "fee"
        )
        .order_by("-created_at", "-id")
    )
