"""Slashing (issue 21 part 4): a slash the platform decides is recorded first, then sent on chain by
the slasher key, then reconciled from the sender's receipt and the mirrored Slashed event.

Where a slash goes (`slash_decide` decides it once, when the slash is recorded):

- **On chain** when staking on chain is configured here (an enabled chain row for
  STAKING_CHAIN_KEY and a SponStaking address: `stake_chain.staking_chain`/`staking_address`) and
  the provider has a current linked stake address (accounts.wallets, purpose "stake"). The slash
  takes only what that address holds in SponStaking (active stake first, then pending unstakes);
  admin-recorded stake is left alone (an admin slashes it in the stake history, `stake_record`).
- **Off chain** otherwise (no linked stake address, or no staking contract here): the provider's
  stake is what an admin recorded, so the slash is applied at once through `stake_record` in the
  same database transaction (status off_chain), capped at the recorded stake as the contract caps
  it; with nothing staked the slash is failed with that reason and nothing changes.

An on-chain slash: `slashes_run` (the beat task `providers.tasks.run_slashes`) records the
`slash(provider, amount, reasonHash)` transaction through chain.sender (purpose "slash", reference
"slash:<id>"), in the same database transaction as the slash's status "sending"; without the slasher
key in the environment (settings.SLASHER_KEY_ENV) decided slashes wait, and the pass logs it once.
The sender's own beat task sends it. Once it is mined, the stake indexer (providers.stake_chain)
mirrors its Slashed event at finality: that event alone lowers the counted stake; `slashes_run` then
links it (matched by the transaction's hash), takes the amount slashed from it and marks the slash
applied. (Should the address have been unlinked meanwhile, the indexer ignores its events: once it
has read past the transaction's block, the slash is marked applied with that note and no amount.)
A transaction that reverted (or whose nonce went elsewhere) makes the slash failed with
the sender's reason; the stake is untouched.

`reference` is the caller's idempotency key ("lease-failure:<lease id>", "admin:<uuid4>"): a retry
returns the slash already decided, and the transaction's own key is the slash's id, so a retry
never slashes twice.

The reason hash (bytes32 sent to the contract, emitted in Slashed) is keccak256 of the UTF-8 bytes of
`{"reason":"…","reference":"…"}`: compact JSON, keys sorted, non-ASCII as is (`reason_hash_of`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from eth_utils import keccak

from accounts.models import User, WalletPurpose
from accounts.wallets import wallet_current
from billing.deposit_pages import encode_call
from chain.keys import key_from_env
from chain.models import TxStatus
from chain.sender import transaction_record
from core import clock
from core.errors import ApplicationError
from providers.models import (
    SPON_DECIMALS,
    ProviderProfile,
    Slash,
    SlashStatus,
    StakeCursor,
    StakeEvent,
    StakeEventKind,
    StakeSource,
)
from providers.services import spon_to_base_units, stake_record
from providers.stake_chain import stake_backfill_pending, staking_address, staking_chain

logger = logging.getLogger(__name__)

PURPOSE = "slash"
MAX_REASON = 200
REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,119}", re.ASCII)
EVIDENCE_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,19}", re.ASCII)


def reason_hash_of(*, reason: str, reference: str) -> str:
    """The bytes32 (0x-hex) sent to SponStaking.slash for this reason and reference."""
    document = {"reason": reason, "reference": reference}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "0x" + keccak(text.encode("utf-8")).hex()


def _clean_reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise ApplicationError("Enter the reason for the slash.", {"field": "reason"})
    if len(reason) > MAX_REASON:
        raise ApplicationError(f"The reason has at most {MAX_REASON} characters.", {"field": "reason"})
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in reason):
        raise ApplicationError("The reason cannot contain control characters.", {"field": "reason"})
    return reason


def _amount(amount_spon: str | Decimal | int | None, amount_base_units: int | None) -> int:
    if (amount_spon is None) == (amount_base_units is None):
        raise ApplicationError("Give the amount in $SPON or in base units, not both.", {"field": "amount"})
    if amount_base_units is not None:
        if isinstance(amount_base_units, bool) or int(amount_base_units) <= 0:
            raise ApplicationError("The amount must be above zero.", {"field": "amount"})
        if int(amount_base_units) >= 10**60:
            raise ApplicationError("That amount is too large.", {"field": "amount"})
        return int(amount_base_units)
    return int(spon_to_base_units(str(amount_spon)))


def _on_chain_address(provider: ProviderProfile) -> str:
    """The stake address an on-chain slash targets, or "" when the slash is off chain (see above)."""
    chain = staking_chain()
    if chain is None or chain.chain_id is None or not staking_address():
        return ""
    link = wallet_current(user=provider.user).get(WalletPurpose.STAKE)
    return link.address if link is not None else ""


def slash_decide(
    *,
    provider: ProviderProfile,
    reason: str,
    reference: str,
    amount_spon: str | Decimal | int | None = None,
    amount_base_units: int | None = None,
    evidence_type: str = "",
    evidence_id: str = "",
    decided_by: User | None = None,
) -> Slash:
    """Decide a slash of the provider: on chain (recorded, sent by `slashes_run`) or applied at once
    to admin-recorded stake (see the module's rule). The same `reference` again returns the slash
    decided the first time, whatever the other arguments. One database transaction; no network."""
    reference = (reference or "").strip()
    if not REFERENCE.fullmatch(reference):
        raise ApplicationError("The slash needs a reference: letters, digits and :._- only.", {"field": "reference"})
    existing = Slash.objects.filter(reference=reference).first()
    if existing is not None:
        return existing
    amount = _amount(amount_spon, amount_base_units)
    reason = _clean_reason(reason)
    evidence_type, evidence_id = (evidence_type or "").strip(), str(evidence_id or "").strip()
    if evidence_type and not EVIDENCE_TYPE.fullmatch(evidence_type):
        raise ApplicationError("Evidence type: lower-case letters, e.g. lease.", {"field": "evidence_type"})
    if len(evidence_id) > 64 or any(ord(ch) < 32 for ch in evidence_id):
        raise ApplicationError("Evidence id: at most 64 printable characters.", {"field": "evidence_id"})
    address = _on_chain_address(provider)
    try:
        with transaction.atomic():
            locked = ProviderProfile.objects.select_for_update().get(id=provider.id)
            if Slash.objects.filter(reference=reference).exists():  # a concurrent decision won
                raise IntegrityError
            slash = Slash.objects.create(
                provider=locked,
                amount=amount,
                reason=reason,
                reason_hash=reason_hash_of(reason=reason, reference=reference),
                reference=reference,
                evidence_type=evidence_type,
                evidence_id=evidence_id,
                status=SlashStatus.DECIDED,
                address=address,
                created_at=clock.now(),
                decided_by=decided_by,
            )
            if not address:
                _apply_off_chain(slash, locked)
    except IntegrityError:
        return Slash.objects.get(reference=reference)
    provider.staked_spon, provider.slash_count = locked.staked_spon, locked.slash_count
    return slash


def _apply_off_chain(slash: Slash, provider: ProviderProfile) -> None:
    """Applies `slash` to the admin-recorded stake now (inside slash_decide's transaction)."""
    taken = min(int(slash.amount), int(provider.staked_spon))
    if taken <= 0:
        slash.status, slash.failure_reason = SlashStatus.FAILED, "The provider has no stake to slash."
        slash.save(update_fields=["status", "failure_reason", "updated_at"])
        return
    event = stake_record(
        provider=provider,
        kind=StakeEventKind.SLASH,
        amount=format(Decimal(taken).scaleb(-SPON_DECIMALS), "f"),
        reason=slash.reason,
        by=slash.decided_by,
    )
    slash.status, slash.stake_event, slash.amount_slashed, slash.applied_at = (
        SlashStatus.OFF_CHAIN,
        event,
        taken,
        clock.now(),
    )
    slash.save(update_fields=["status", "stake_event", "amount_slashed", "applied_at", "updated_at"])


# --- The beat pass -------------------------------------------------------------------------------


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


def slashes_run() -> SlashRunResult:
    """The beat task's pass: settle what the sender and the stake indexer settled, then record the
    transactions of newly decided slashes."""
    result = slashes_reconcile()
    return slashes_record(result)


# --- Reads ---------------------------------------------------------------------------------------


def slash_list(*, provider: ProviderProfile, limit: int = 50) -> QuerySet[Slash]:
    """The provider's slashes, newest first, with their transactions."""
    return Slash.objects.filter(provider=provider).select_related("chain_tx__chain", "stake_event")[:limit]
