"""Provider writes: onboarding, node tokens, list prices, maintenance, stake record."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import Http404

from accounts.models import User
from core import clock
from core.addresses import evm_address_clean, solana_address_clean
from core.errors import ApplicationError
from core.money import parse_plain_decimal
from providers import hooks, liveness
from providers.models import (
    SPON_DECIMALS,
    GpuModel,
    Node,
    NodeEvent,
    NodeEventKind,
    NodeMode,
    NodeOutage,
    NodeStatus,
    NodeToken,
    OutageKind,
    ProviderGpuPrice,
    ProviderProfile,
    Region,
    StakeEvent,
    StakeEventKind,
)
from providers.pricing import whole_node_price_per_hour_micros
from providers.selectors import min_stake_per_gpu_base_units, stake_nodes

TOKEN_PREFIX = "fzt_"
TOKEN_PREFIX_LENGTH = 12
MAX_TOKEN_LENGTH = 100
MAX_ACTIVE_TOKENS = 200
MAX_PRICE_PER_GPU_HOUR_MICROS = 100_000_000  # $100 per GPU-hour: above that is a typo
MAX_PRICE_PER_UNIT_MONTH_MICROS = 1_000_000_000  # $1,000 per core/GB-month


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _clean_text(value: str, *, field: str, label: str, max_length: int, required: bool = True) -> str:
    value = " ".join((value or "").split())
    if required and not value:
        raise ApplicationError(f"Enter {label}.", {"field": field})
    if len(value) > max_length:
        raise ApplicationError(f"{label.capitalize()} has at most {max_length} characters.", {"field": field})
    if any(ord(ch) < 32 for ch in value):
        raise ApplicationError(f"{label.capitalize()} cannot contain control characters.", {"field": field})
    return value


def _region(code: str | None, *, field: str) -> Region | None:
    if not code:
        return None
    region = Region.objects.filter(code=code).first()
    if region is None:
        raise ApplicationError(f"Unknown region {code!r}.", {"field": field})
    return region


def _mode(mode: str, *, field: str = "mode") -> str:
    if mode not in NodeMode.values:
        raise ApplicationError("Choose fizz (community) or provider (secure) mode.", {"field": field})
    return mode


# --- Onboarding --------------------------------------------------------------------------------


@transaction.atomic
def provider_onboard(
    *,
    user: User,
    display_name: str,
    payout_evm_address: str = "",
    payout_solana_address: str = "",
    default_region: str | None = None,
    default_mode: str = NodeMode.FIZZ,
) -> ProviderProfile:
    """Become a provider, or update the provider profile. At least one payout address is needed."""
    display_name = _clean_text(display_name, field="display_name", label="a display name", max_length=80)
    evm = evm_address_clean(payout_evm_address) if (payout_evm_address or "").strip() else ""
    solana = solana_address_clean(payout_solana_address) if (payout_solana_address or "").strip() else ""
    if not evm and not solana:
        raise ApplicationError(
            "Enter a payout address: an EVM address, a Solana address, or both.", {"field": "payout_evm_address"}
        )
    region = _region(default_region, field="default_region")
    if region is None:
        raise ApplicationError("Choose the region your machines are in.", {"field": "default_region"})
    profile, _ = ProviderProfile.objects.update_or_create(
        user=user,
        defaults={
            "display_name": display_name,
            "payout_evm_address": evm,
            "payout_solana_address": solana,
            "default_region": region,
            "default_mode": _mode(default_mode, field="default_mode"),
        },
    )
    if not user.is_provider:
        user.is_provider = True
        user.save(update_fields=["is_provider"])
    stake_coverage_refresh(provider=profile)
    return profile


def get_provider_for_user(user: User) -> ProviderProfile:
    profile = ProviderProfile.objects.filter(user=user).select_related("default_region").first()
    if profile is None:
        raise ApplicationError("Become a provider first.", status=403)
    return profile


# --- Node tokens -------------------------------------------------------------------------------


def node_token_create(
    *, provider: ProviderProfile, label: str, mode: str | None = None, region: str | None = None
) -> tuple[NodeToken, str]:
    """A token to register one machine: the row and the raw token, shown only now."""
    label = _clean_text(label, field="label", label="a label", max_length=80)
    mode = _mode(mode or provider.default_mode)
    region_row = _region(region, field="region")
    if NodeToken.objects.filter(provider=provider, revoked_at__isnull=True).count() >= MAX_ACTIVE_TOKENS:
        raise ApplicationError(
            f"You have {MAX_ACTIVE_TOKENS} active tokens, the most allowed. Revoke unused ones.", status=409
        )
    for _attempt in range(3):
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                token = NodeToken.objects.create(
                    provider=provider,
                    label=label,
                    mode=mode,
                    region=region_row,
                    prefix=raw[:TOKEN_PREFIX_LENGTH],
                    token_hash=token_hash(raw),
                )
        except IntegrityError:
            continue
        return token, raw
    raise RuntimeError("could not generate a unique node token prefix")


def node_token_list(*, provider: ProviderProfile) -> QuerySet[NodeToken]:
    return NodeToken.objects.filter(provider=provider).select_related("node", "region")


def node_token_revoke(*, provider: ProviderProfile, token_id: int) -> NodeToken:
    """Revoke a token; its node's secret stops working at once (the agent gets 401)."""
    with transaction.atomic():
        token = NodeToken.objects.select_for_update().filter(provider=provider, id=token_id).first()
        if token is None:
            raise Http404("No such token.")
        if token.revoked_at is None:
            token.revoked_at = clock.now()
            token.save(update_fields=["revoked_at"])
            if token.node_id:
                Node.objects.filter(id=token.node_id).update(secret_hash="")
        node_id = token.node_id
    if node_id:
        liveness.node_auth_forget(node_id)
    return token


# --- Prices (provider mode) ---------------------------------------------------------------------


def usd_to_micros(value: str | Decimal | int | float, *, field: str, maximum: int) -> int:
    plain = isinstance(value, str | Decimal | int | float) and not isinstance(value, bool)
    text = str(value).strip().removeprefix("$") if plain else ""
    amount = parse_plain_decimal(text)  # ASCII digits, no exponent: not '٣', '３' or '1e999999'
    if amount is None:
        raise ApplicationError("Enter a price in US dollars, e.g. 1.25.", {"field": field})
    if amount <= 0:
        raise ApplicationError("A price must be above zero.", {"field": field})
    micros = int((amount * 1_000_000).to_integral_value())
    if micros > maximum:
        raise ApplicationError(f"That price is above the ${maximum / 1_000_000:,.0f} limit.", {"field": field})
    if micros < 1:
        raise ApplicationError("A price must be at least $0.000001.", {"field": field})
    return micros


@transaction.atomic
def provider_prices_update(
    *,
    provider: ProviderProfile,
    gpu_prices: dict[str, str | None],
    cpu_per_core_month: str,
    memory_per_gb_month: str,
    storage_per_gb_month: str,
) -> ProviderProfile:
    """Set provider-mode list prices. Applies to nodes registered from now on (running leases keep
    theirs). Everything is checked before anything is written."""
    cpu = usd_to_micros(cpu_per_core_month, field="cpu_per_core_month", maximum=MAX_PRICE_PER_UNIT_MONTH_MICROS)
    memory = usd_to_micros(memory_per_gb_month, field="memory_per_gb_month", maximum=MAX_PRICE_PER_UNIT_MONTH_MICROS)
    storage = usd_to_micros(storage_per_gb_month, field="storage_per_gb_month", maximum=MAX_PRICE_PER_UNIT_MONTH_MICROS)
    known = set(GpuModel.objects.filter(slug__in=list(gpu_prices)).values_list("slug", flat=True))
    gpu: dict[str, int | None] = {}
    for slug, price in gpu_prices.items():
        if slug not in known:
            raise ApplicationError(f"Unknown GPU model {slug!r}.", {"field": f"gpu_{slug}"})
        blank = price is None or not str(price).strip()
        gpu[slug] = None if blank else usd_to_micros(price, field=f"gpu_{slug}", maximum=MAX_PRICE_PER_GPU_HOUR_MICROS)
    provider.cpu_price_per_core_month_micros = cpu
    provider.memory_price_per_gb_month_micros = memory
    provider.storage_price_per_gb_month_micros = storage
    provider.save(
        update_fields=[
            "cpu_price_per_core_month_micros",
            "memory_price_per_gb_month_micros",
            "storage_price_per_gb_month_micros",
            "updated_at",
        ]
    )
    for slug, micros in gpu.items():
        if micros is None:
            ProviderGpuPrice.objects.filter(provider=provider, gpu_model_id=slug).delete()
        else:
            ProviderGpuPrice.objects.update_or_create(
                provider=provider, gpu_model_id=slug, defaults={"price_per_hour_micros": micros}
            )
    return provider


# --- Maintenance -------------------------------------------------------------------------------


def get_node_for_provider(*, provider: ProviderProfile, node_id: int) -> Node:
    node = Node.objects.filter(provider=provider, id=node_id).select_related("gpu_model", "region").first()
    if node is None:
        raise Http404("No such node.")
    return node


def node_maintenance_set(*, provider: ProviderProfile, node_id: int, on: bool) -> Node:
    """Maintenance: not matchable and not penalised (its time is excused from uptime)."""
    now = clock.now()
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(provider=provider, id=node_id).first()
        if node is None:
            raise Http404("No such node.")
        if node.in_maintenance == on:
            return node
        node.in_maintenance = on
        node.save(update_fields=["in_maintenance", "updated_at"])
        if on:
            NodeOutage.objects.create(node=node, kind=OutageKind.MAINTENANCE, started_at=now, reason="maintenance")
            NodeEvent.objects.create(node=node, kind=NodeEventKind.MAINTENANCE_ON, at=now)
        else:
            NodeOutage.objects.filter(node=node, kind=OutageKind.MAINTENANCE, ended_at__isnull=True).update(
                ended_at=now
            )
            NodeEvent.objects.create(node=node, kind=NodeEventKind.MAINTENANCE_OFF, at=now)
    liveness.node_auth_forget(node.id)
    return node


def node_disable(*, node_id: int, by: User | None = None) -> int:
    """An admin takes a node off the market: status "disabled" (not matched; its heartbeats get no
    work, so its agent stops what runs), a timeline entry saying who, and what runs on it ended
    through the disabled hook (marketplace: leases end now and fail over), all in one transaction.
    Returns the leases ended; 0 and no change if it was already disabled."""
    now = clock.now()
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(id=node_id).first()
        if node is None:
            raise Http404("No such node.")
        if node.status == NodeStatus.DISABLED:
            return 0
        node.status = NodeStatus.DISABLED
        node.save(update_fields=["status", "updated_at"])
        who = by.email if by else "an admin"
        NodeEvent.objects.create(node=node, kind=NodeEventKind.DISABLED, at=now, message=f"disabled by {who}")
        ended = hooks.node_disabled(node.id, now)
        transaction.on_commit(lambda: liveness.node_auth_forget(node_id))
    return ended


def node_admin_save(*, node: Node, changed_fields: Collection[str], initial_status: str, by: User | None = None) -> int:
    """Save an admin's edit of a node (fields already set on `node`), in one transaction. The hourly
    price is recomputed from the per-resource prices (rounded once, providers.pricing). A change of
    status to "disabled" goes through `node_disable` (the timeline entry, its leases ended and failed
    over); any other edit makes the heartbeat forget its cached status and maintenance on commit.
    Returns the leases ended (0 unless this edit disabled the node)."""
    disabling = "status" in changed_fields and node.status == NodeStatus.DISABLED
    with transaction.atomic():
        if disabling:  # node_disable makes that change, with what follows from it
            node.status = initial_status
        node.price_per_hour_micros = whole_node_price_per_hour_micros(node)
        node.save()
        if not disabling:  # (node_disable does it too) the heartbeat reads status and maintenance from the cache
            node_id = node.id
            transaction.on_commit(lambda: liveness.node_auth_forget(node_id))
            return 0
        ended = node_disable(node_id=node.id, by=by)
        node.status = NodeStatus.DISABLED
    return ended


def node_review_clear(*, node_ids: list[int], by: User | None = None) -> int:
    """An admin looked at flagged nodes and cleared them; the timeline says who and when."""
    now = clock.now()
    with transaction.atomic():
        flagged = list(
            Node.objects.select_for_update().filter(id__in=node_ids, needs_review=True).values_list("id", flat=True)
        )
        Node.objects.filter(id__in=flagged).update(needs_review=False, review_reason="")
        who = by.email if by else "an admin"
        NodeEvent.objects.bulk_create(
            [
                NodeEvent(node_id=node_id, kind=NodeEventKind.FLAGGED, at=now, message=f"review cleared by {who}")
                for node_id in flagged
            ]
        )
    return len(flagged)


# --- Stake record ------------------------------------------------------------------------------


SPON_AMOUNT = re.compile(r"[+-]?[0-9]{1,42}(?:\.[0-9]{0,40})?", re.ASCII)


def spon_to_base_units(amount: str | Decimal, *, field: str = "amount") -> Decimal:
    text = str(amount).strip()
    # ASCII digits only, no exponent, bounded length: Decimal() reads '٣' and '1e999999' too.
    value = Decimal(text) if SPON_AMOUNT.fullmatch(text) else None
    if value is None:
        raise ApplicationError("Enter an amount of $SPON, e.g. 200.", {"field": field})
    if value <= 0:
        raise ApplicationError("The amount must be above zero.", {"field": field})
    base = value * (10**SPON_DECIMALS)
    if base != base.to_integral_value():
        raise ApplicationError("$SPON has 18 decimals; that amount has more.", {"field": field})
    if base >= Decimal(10) ** 60:
        raise ApplicationError("That amount is too large.", {"field": field})
    return base.to_integral_value()


ADMIN_STAKE_KINDS = (StakeEventKind.STAKE, StakeEventKind.UNSTAKE, StakeEventKind.SLASH)


@transaction.atomic
def stake_record(
    *, provider: ProviderProfile, kind: str, amount: str | Decimal, reason: str = "", by: User | None = None
) -> StakeEvent:
    """Record a stake change (from an admin until the staking contract is bound)."""
    # An admin records stake, unstake or slash (off-chain agreements); a withdrawal of pending
    # unstakes happens on chain only (providers.stake_chain mirrors it).
    if kind not in ADMIN_STAKE_KINDS:
        raise ApplicationError("Unknown stake change.", {"field": "kind"})
    base = spon_to_base_units(amount)
    reason = _clean_text(reason, field="reason", label="a reason", max_length=200, required=kind == "slash")
    locked = ProviderProfile.objects.select_for_update().get(id=provider.id)
    balance = locked.staked_spon + base if kind == StakeEventKind.STAKE else locked.staked_spon - base
    if balance < 0:
        raise ApplicationError(
            f"The provider has {locked.staked_spon / 10**SPON_DECIMALS:,} $SPON staked; that is less.",
            {"field": "amount"},
            status=409,
        )
    locked.staked_spon = balance
    if kind == StakeEventKind.SLASH:
        locked.slash_count += 1
    locked.save(update_fields=["staked_spon", "slash_count", "updated_at"])
    event = StakeEvent.objects.create(
        provider=locked,
        kind=kind,
        amount=base,
        balance_after=balance,
        reason=reason,
        created_at=clock.now(),
        created_by=by,
    )
    stake_coverage_refresh(provider=locked)
    provider.staked_spon, provider.slash_count = balance, locked.slash_count
    return event


def stake_coverage_refresh(*, provider: ProviderProfile) -> int:
    """Mark which of the provider's nodes the stake covers (oldest first). Returns GPUs covered."""
    # Demo nodes (no agent) keep the coverage they were seeded with.
    per_gpu = min_stake_per_gpu_base_units()
    stake = ProviderProfile.objects.filter(id=provider.id).values_list("staked_spon", flat=True).first() or Decimal(0)
    covered_gpus = 0
    covered_ids, uncovered_ids = [], []
    for node_id, gpu_count in stake_nodes(provider=provider).values_list("id", "gpu_count"):
        if per_gpu * (covered_gpus + gpu_count) <= stake:
            covered_gpus += gpu_count
            covered_ids.append(node_id)
        else:
            uncovered_ids.append(node_id)
    Node.objects.filter(id__in=covered_ids, stake_covered=False).update(stake_covered=True)
    Node.objects.filter(id__in=uncovered_ids, stake_covered=True).update(stake_covered=False)
    Node.objects.filter(provider=provider, status="disabled", stake_covered=True).update(stake_covered=False)
    return covered_gpus
