"""Deciding a slash (`slash_decide`): once per reference, on chain or applied at once to the
admin-recorded stake (the rule is in the package's docstring), and its reason hash."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from django.db import IntegrityError, transaction
from eth_utils import keccak

from accounts.models import User, WalletPurpose
from accounts.wallets import wallet_current
from core import clock
from core.errors import ApplicationError
from providers.models import SPON_DECIMALS, Node, ProviderProfile, Slash, SlashStatus, StakeEventKind
from providers.services import spon_to_base_units, stake_record
from providers.stake_chain import staking_address, staking_chain

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
