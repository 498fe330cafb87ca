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

`reference` is the caller's idempotency key ("lease-downtime:<lease id>", "liveness:<node id>:<era
start>", "admin:<uuid4>"): a retry returns the slash already decided, and the transaction's own key
is the slash's id, so a retry never slashes twice.

The policy (issue 22): downtime during a lease slashes its value (marketplace.deployments.penalties);
SLASH_LIVENESS_REPEATS failed liveness challenges in an era slash SLASH_LIVENESS_SPON once per node and
era (`liveness_failure_slash`, a providers.hooks challenge-failure handler); `era_forfeit_reason`
says why an era's rewards are forfeited. A provider appeals an applied slash once; an upheld appeal
returns what was slashed (see "Appeals" below).

The reason hash (bytes32 sent to the contract, emitted in Slashed) is keccak256 of the UTF-8 bytes of
`{"reason":"…","reference":"…"}`: compact JSON, keys sorted, non-ASCII as is (`reason_hash_of`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from eth_utils import keccak, to_checksum_address

from accounts.models import User, WalletPurpose
from accounts.wallets import wallet_current
from billing.deposit_pages import encode_call
from billing.models import UsageMeter
from chain.keys import key_from_env
from chain.models import TxStatus
from chain.sender import transaction_record
from core import clock
from core.errors import ApplicationError
from providers.models import (
    SPON_DECIMALS,
    AppealStatus,
    ChallengeStatus,
    Node,
    NodeChallenge,
    NodeEvent,
    NodeEventKind,
    ProviderProfile,
    RefundStatus,
    Slash,
    SlashAppeal,
    SlashStatus,
    StakeCursor,
    StakeEvent,
    StakeEventKind,
    StakeSource,
)
from providers.services import spon_to_base_units, stake_record
from providers.stake_chain import stake_backfill_pending, staking_address, staking_chain
from providers.uptime import ERA, last_era_end

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
    node: Node | None = None,
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
                node=node,
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


def slashes_run() -> SlashRunResult:
    """The beat task's pass: settle what the sender and the stake indexer settled, then record the
    transactions of newly decided slashes; the same for the refunds of upheld appeals."""
    result = slashes_reconcile()
    result = slashes_record(result)
    refunds_reconcile(result)
    return refunds_record(result)


# --- Reads ---------------------------------------------------------------------------------------


def slash_list(*, provider: ProviderProfile, limit: int = 50) -> QuerySet[Slash]:
    """The provider's slashes, newest first, with their transactions."""
    return Slash.objects.filter(provider=provider).select_related(
        "chain_tx__chain", "stake_event", "appeal__refund_tx__chain"
    )[:limit]


# --- The policy: failed liveness (issue 22, part 4) ----------------------------------------------
#
# A failed liveness challenge is one the agent answered and the answer failed: the resources were
# not there, the nonce was wrong, or it came after the deadline (status failed, or missed with an
# answer). Those are the ones providers.liveness reports through `hooks.challenge_failed`. A
# challenge nobody answered (the node went silent, or ignored it) is counted as downtime by
# liveness (NODE_CHALLENGE_PENALTY_SECONDS each), not here. A challenge belongs to the era (UTC day,
# providers.uptime) it was issued in.

LIVENESS_PREFIX = "liveness"


def _failed_liveness() -> Q:
    return Q(status=ChallengeStatus.FAILED) | Q(status=ChallengeStatus.MISSED, answered_at__isnull=False)


def era_bounds(at: datetime) -> tuple[datetime, datetime]:
    """The era (providers.uptime: 24 h from 00:00 UTC) that `at` falls in."""
    start = last_era_end(at)
    return start, start + ERA


def _era_token(era_start: datetime) -> str:
    return era_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def liveness_reference(*, node_id: int, era_start: datetime) -> str:
    return f"{LIVENESS_PREFIX}:{node_id}:{_era_token(era_start)}"


def era_failed_challenges(*, node: Node | int, era_start: datetime, era_end: datetime) -> QuerySet[NodeChallenge]:
    node_id = node if isinstance(node, int) else node.id
    return (
        NodeChallenge.objects.filter(node_id=node_id, issued_at__gte=era_start, issued_at__lt=era_end)
        .filter(_failed_liveness())
        .order_by("issued_at", "id")
    )


def liveness_failure_slash(node_id: int, challenge_id: str, reason: str) -> Slash | None:
    """providers.hooks' challenge-failure handler (after the answer's commit): the node's
    SLASH_LIVENESS_REPEATS-th failed challenge of an era decides one slash of SLASH_LIVENESS_SPON whole
    $SPON; more failures in the same era find the same reference and decide nothing more."""
    whole_spon = settings.SLASH_LIVENESS_SPON
    if whole_spon <= 0:
        return None
    node = Node.objects.select_related("provider").filter(id=node_id).first()
    challenge = NodeChallenge.objects.filter(node_id=node_id, public_id=challenge_id).first()
    if node is None or challenge is None or node.is_simulated:
        return None
    era_start, era_end = era_bounds(challenge.issued_at)
    failed = list(
        era_failed_challenges(node=node, era_start=era_start, era_end=era_end).values_list("public_id", flat=True)
    )
    repeats = settings.SLASH_LIVENESS_REPEATS
    if len(failed) < repeats:
        return None
    first_words = " ".join((reason or "").split())[:60]
    text = (
        f"Node {node.id} failed {len(failed)} liveness challenges in the era of {era_start:%Y-%m-%d} UTC "
        f"({repeats} slash {whole_spon} $SPON); last: {first_words}"
    )
    try:
        return slash_decide(
            provider=node.provider,
            amount_base_units=whole_spon * 10**SPON_DECIMALS,
            reason=text[:MAX_REASON],
            reference=liveness_reference(node_id=node.id, era_start=era_start),
            evidence_type="challenge",
            evidence_id=challenge.public_id,
            node=node,
        )
    except ApplicationError as exc:  # never fail the heartbeat that carried the answer
        logger.error("node %s: the liveness slash was not decided: %s", node.id, exc.message)
        return None


def era_forfeit_reason(node: Node | int, era_start: datetime, era_end: datetime) -> str:
    """Why the node's rewards for the era [era_start, era_end) are forfeited, or "" when they are
    not: resources that differ from the node's registration (a liveness answer flagged it for review:
    spoofed resources), or any failed liveness challenge of the era (as defined above)."""
    node_id = node if isinstance(node, int) else node.id
    return era_forfeit_reasons([node_id], era_start, era_end).get(node_id, "")


def era_forfeit_reasons(node_ids: list[int], era_start: datetime, era_end: datetime) -> dict[int, str]:
    """`era_forfeit_reason` of many nodes in two queries: {node id: reason} of the forfeited ones.
    The queries read the ids' range (no list of thousands of ids), the rows of other nodes skipped."""
    wanted = set(node_ids)
    if not wanted:
        return {}
    lo, hi = min(wanted), max(wanted)
    flagged: dict[int, tuple[datetime, str]] = {}
    rows = (
        NodeEvent.objects.filter(node_id__in=node_ids, kind=NodeEventKind.FLAGGED, at__gte=era_start, at__lt=era_end)
        .exclude(message__startswith="review cleared")
        .order_by("node_id", "at", "id")
        .values_list("node_id", "at", "message")
    )
    for node_id, at, message in rows:
        if node_id in wanted:
            flagged.setdefault(node_id, (at, message))
    failed: dict[int, list[tuple[str, datetime, str]]] = {}
    rows = (
        NodeChallenge.objects.filter(node_id__gte=lo, node_id__lte=hi, issued_at__gte=era_start, issued_at__lt=era_end)
        .filter(_failed_liveness())
        .order_by("node_id", "issued_at", "id")
        .values_list("node_id", "public_id", "issued_at", "failure_reason")
    )
    for node_id, public_id, issued_at, why in rows:
        if node_id in wanted:
            failed.setdefault(node_id, []).append((public_id, issued_at, why))
    reasons: dict[int, str] = {}
    for node_id in set(flagged) | set(failed):
        parts = []
        if node_id in flagged:
            at, message = flagged[node_id]
            parts.append(f"spoofed resources: {message} (at {at:%H:%M:%S} UTC)")
        if node_id in failed:
            count = len(failed[node_id])
            public_id, issued_at, why = failed[node_id][0]
            noun = "challenge" if count == 1 else "challenges"
            why = " ".join((why or "").split())[:120]
            parts.append(f"{count} failed liveness {noun} (first {public_id} at {issued_at:%H:%M:%S} UTC: {why})")
        reasons[node_id] = "; ".join(parts)
    return reasons


# --- Appeals -------------------------------------------------------------------------------------
#
# The provider appeals an applied slash once (status open); an admin upholds or dismisses it with an
# answer. Upholding returns what was slashed, in the same database transaction as the decision:
#
# - on chain: a SponToken `transfer(stake address, amount slashed)` from the treasury key
#   (SLASH_REFUND_KEY_ENV) recorded through chain.sender (purpose "slash-refund", reference
#   "slash-refund:<slash id>"): the tokens go back to the wallet, not into SponStaking (it has no
#   stake-for), so the provider stakes them again. Without the key the refund waits (refund status
#   "waiting", with why) and `slashes_run` records it once the key is there; `slashes_run` then
#   marks it returned once mined, or failed with the sender's reason.
# - off chain: a stake event of the amount on the admin-recorded stake ("appeal upheld (slash #id)").
#
# A decided appeal is never decided again, and the transaction's key is the slash's id, so a retry
# never refunds twice.

REFUND_PURPOSE = "slash-refund"
MAX_APPEAL = 2000
APPEALABLE = (SlashStatus.APPLIED, SlashStatus.OFF_CHAIN)


def _clean_long_text(text: str, *, field_name: str, label: str, required_message: str) -> str:
    text = (text or "").replace("\r\n", "\n").strip()
    if not text:
        raise ApplicationError(required_message, {"field": field_name})
    if len(text) > MAX_APPEAL:
        raise ApplicationError(f"{label} has at most {MAX_APPEAL:,} characters.", {"field": field_name})
    if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in text):
        raise ApplicationError(f"{label} cannot contain control characters.", {"field": field_name})
    return text


def get_slash_for_provider(*, provider: ProviderProfile, slash_id: int) -> Slash:
    slash = Slash.objects.filter(provider=provider, id=slash_id).select_related("node").first()
    if slash is None:
        raise Http404("No such slash.")
    return slash


def appeal_create(*, provider: ProviderProfile, slash_id: int, text: str) -> SlashAppeal:
    """The provider's appeal of their own applied slash (another's: 404); one per slash."""
    slash = get_slash_for_provider(provider=provider, slash_id=slash_id)
    if slash.status not in APPEALABLE:
        raise ApplicationError("Only a slash that was applied can be appealed.", {"field": "slash"}, status=409)
    text = _clean_long_text(text, field_name="text", label="The appeal", required_message="Write your appeal.")
    already = ApplicationError("You have already appealed this slash.", {"field": "slash"}, status=409)
    if SlashAppeal.objects.filter(slash=slash).exists():
        raise already
    try:
        with transaction.atomic():
            return SlashAppeal.objects.create(slash=slash, text=text, created_at=clock.now())
    except IntegrityError:
        raise already from None


def appeal_decide(*, appeal_id: int, uphold: bool, answer: str, by: User | None) -> SlashAppeal:
    """Uphold (return what was slashed: see above) or dismiss an open appeal, with the admin's
    answer. One database transaction; no network. An appeal already decided is refused."""
    answer = _clean_long_text(
        answer, field_name="answer", label="The answer", required_message="Write the answer the provider will read."
    )
    with transaction.atomic():
        appeal = (
            SlashAppeal.objects.select_for_update(of=("self",))
            .select_related("slash__chain_tx__chain")
            .get(id=appeal_id)
        )
        if appeal.status != AppealStatus.OPEN:
            raise ApplicationError(f"Appeal {appeal.id} was already {appeal.status}.", status=409)
        appeal.status = AppealStatus.UPHELD if uphold else AppealStatus.DISMISSED
        appeal.answer, appeal.decided_by, appeal.decided_at = answer, by, clock.now()
        if uphold:
            _refund_start(appeal, by=by)
        appeal.save()
    return appeal


def _refund_start(appeal: SlashAppeal, *, by: User | None) -> None:
    slash = appeal.slash
    amount = int(slash.amount_slashed or 0)
    if amount <= 0:
        appeal.refund_status = RefundStatus.NOTHING
        appeal.refund_note = "Nothing was counted as slashed here, so nothing is returned."
        return
    appeal.refund_amount = amount
    if slash.status == SlashStatus.OFF_CHAIN:
        provider = ProviderProfile.objects.get(id=slash.provider_id)
        event = stake_record(
            provider=provider,
            kind=StakeEventKind.STAKE,
            amount=format(Decimal(amount).scaleb(-SPON_DECIMALS), "f"),
            reason=f"appeal upheld (slash #{slash.id})",
            by=by,
        )
        appeal.refund_status, appeal.refund_stake_event, appeal.refunded_at = RefundStatus.RESTORED, event, clock.now()
        return
    appeal.refund_status = RefundStatus.WAITING
    _refund_record(appeal)


def _refund_record(appeal: SlashAppeal) -> str:
    """Records the refund transfer of an upheld on-chain appeal (inside the caller's transaction):
    status sending, or waiting with why. Returns why it waits ("" when recorded)."""
    slash = appeal.slash
    key_env = settings.SLASH_REFUND_KEY_ENV
    try:
        key = key_from_env(key_env)
    except ImproperlyConfigured as exc:
        key, why = "", str(exc)
    else:
        why = "" if key else f"{key_env} is not set"
    chain = slash.chain_tx.chain if slash.chain_tx_id else staking_chain()
    if not why and (chain is None or chain.chain_id is None or not chain.spon_token_address):
        why = "no $SPON token is configured on the staking chain"
    if why:
        appeal.refund_status = RefundStatus.WAITING
        appeal.refund_note = f"The refund waits: {why}."[:500]
        return why
    tx = transaction_record(
        chain=chain,
        purpose=REFUND_PURPOSE,
        reference=f"{REFUND_PURPOSE}:{slash.id}",
        to=chain.spon_token_address,
        data=encode_call("SponToken", "transfer", [to_checksum_address(slash.address), int(appeal.refund_amount)]),
        sender_key_env=key_env,
    )
    appeal.refund_tx, appeal.refund_status, appeal.refund_note = tx, RefundStatus.SENDING, ""
    return ""


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


# --- Evidence (the provider's view of a slash) ---------------------------------------------------


def slash_evidence(slash: Slash) -> dict[str, Any]:
    """What the provider can check a slash against: for a lease, its meter (price, start, charged
    until the last heartbeat) and the node's events over the downtime; for a challenge, the node's
    failed challenges of that era."""
    provider = slash.provider
    evidence: dict[str, Any] = {"kind": slash.evidence_type, "node": slash.node}
    if slash.evidence_type == "lease":
        meter = UsageMeter.objects.filter(
            reference_type="lease", reference_id=slash.evidence_id, payee_id=provider.user_id
        ).first()
        evidence["meter"] = meter
        if slash.node is not None and meter is not None and meter.closed_at is not None:
            evidence["events"] = list(
                NodeEvent.objects.filter(
                    node=slash.node,
                    at__gte=meter.closed_at - timedelta(minutes=1),
                    at__lte=slash.created_at + timedelta(minutes=1),
                ).order_by("at", "id")[:50]
            )
    elif slash.evidence_type == "challenge":
        challenge = (
            NodeChallenge.objects.filter(public_id=slash.evidence_id, node__provider=provider)
            .select_related("node")
            .first()
        )
        if challenge is not None:
            era_start, era_end = era_bounds(challenge.issued_at)
            evidence.update(
                {
                    "node": slash.node or challenge.node,
                    "era_start": era_start,
                    "era_end": era_end,
                    "challenges": list(
                        era_failed_challenges(node=challenge.node_id, era_start=era_start, era_end=era_end)[:100]
                    ),
                }
            )
    return evidence
