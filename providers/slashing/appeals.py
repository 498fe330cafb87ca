"""Appeals of slashes.

The provider appeals an applied slash once (status open); an admin upholds or dismisses it with an
answer. Upholding returns what was slashed, in the same database transaction as the decision:

- on chain: a SponToken `transfer(stake address, amount slashed)` from the treasury key
  (SLASH_REFUND_KEY_ENV) recorded through chain.sender (purpose "slash-refund", reference
  "slash-refund:<slash id>"): the tokens go back to the wallet, not into SponStaking (it has no
  stake-for), so the provider stakes them again. Without the key the refund waits (refund status
  "waiting", with why) and `slashes_run` records it once the key is there; `slashes_run` then
  marks it returned once mined, or failed with the sender's reason.
- off chain: a stake event of the amount on the admin-recorded stake ("appeal upheld (slash #id)").

A decided appeal is never decided again, and the transaction's key is the slash's id, so a retry
never refunds twice.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from eth_utils import to_checksum_address

from accounts.models import User
from billing.deposit_pages import encode_call
from chain.keys import key_from_env
from chain.sender import transaction_record
from core import clock
from core.errors import ApplicationError
from providers.models import (
    SPON_DECIMALS,
    AppealStatus,
    ProviderProfile,
    RefundStatus,
    SlashAppeal,
    SlashStatus,
    StakeEventKind,
)
from providers.services import stake_record
from providers.slashing.selectors import get_slash_for_provider
from providers.stake_chain import staking_chain

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
