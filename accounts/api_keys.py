"""API keys: created and revoked on the account page, used as `Authorization: Bearer <key>`.

Only a SHA-256 hash of a key is stored, so a key is shown once, when it is created. Keys are
long random strings (256 bits), so a fast hash is enough: there is nothing to brute-force.

A key has scopes (what it may do: the route table is in accounts.auth), an optional daily spend cap
(what the deployments it starts may hold per UTC day) and an optional list of client networks it
works from. Every request reads the key's row, so a revocation or a changed limit applies to the
next request.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from accounts.models import ApiKey, ApiKeyScope, ApiKeySpend, User
from core import clock
from core.errors import ApplicationError
from core.money import MICROS_PER_USD, format_usd, parse_plain_decimal

KEY_PREFIX = "sph_"
PREFIX_LENGTH = 12  # "sph_" and 8 random characters: enough to tell keys apart in a list
MAX_KEY_LENGTH = 100  # a real key is 47 characters; anything longer is not worth hashing
MAX_ACTIVE_KEYS = 25
LABEL_MAX_LENGTH = ApiKey._meta.get_field("label").max_length
# Writing last_used_at on every request would turn each API read into a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_ALLOWED_NETWORKS = 20
MAX_DAILY_SPEND_CAP = 1_000_000 * MICROS_PER_USD
SCOPES = tuple(scope.value for scope in ApiKeyScope)


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _clean_label(label: str) -> str:
    label = " ".join((label or "").split())
    if not label:
        raise ApplicationError("Give the key a label, e.g. where it is used.", {"field": "label"})
    if len(label) > LABEL_MAX_LENGTH:
        raise ApplicationError(f"A label has at most {LABEL_MAX_LENGTH} characters.", {"field": "label"})
    if any(ord(ch) < 32 for ch in label):
        raise ApplicationError("A label cannot contain control characters.", {"field": "label"})
    return label


def scopes_clean(scopes: Iterable[str]) -> list[str]:
    """The scopes as stored: known names, sorted, once each; `full` alone when it is among them."""
    chosen = set()
    for scope in scopes:
        if scope not in SCOPES:
            raise ApplicationError(
                f"Unknown scope {str(scope)[:40]!r}: choose from {', '.join(SCOPES)}.", {"field": "scopes"}
            )
        chosen.add(scope)
    if not chosen:
        raise ApplicationError("Choose at least one scope.", {"field": "scopes"})
    if ApiKeyScope.FULL in chosen:
        return [ApiKeyScope.FULL.value]
    return sorted(chosen)


def daily_spend_cap_parse(text: str | None) -> int | None:
    """'50' or '50.00' (USD, at most 2 decimal places) → micro-USD; empty → no cap."""
    text = (text or "").strip()
    if not text:
        return None
    amount = parse_plain_decimal(text)
    if amount is None or amount.as_tuple().exponent < -2 or text[0] in "+-":  # type: ignore[operator]
        raise ApplicationError(
            "Enter the daily cap in dollars with at most two decimal places, e.g. 50.00, or leave it empty.",
            {"field": "daily_spend_cap"},
        )
    micros = int(amount * MICROS_PER_USD)
    if micros <= 0:
        raise ApplicationError("A daily cap is above zero (leave it empty for no cap).", {"field": "daily_spend_cap"})
    if micros > MAX_DAILY_SPEND_CAP:
        raise ApplicationError(
            f"A daily cap is at most {format_usd(MAX_DAILY_SPEND_CAP, places=2)} (leave it empty for no cap).",
            {"field": "daily_spend_cap"},
        )
    return micros


def allowed_networks_parse(text: str | Iterable[str] | None) -> list[str]:
    """Addresses and CIDR networks, separated by commas, spaces or lines → their canonical forms
    (a single host without its /32 or /128). Empty → [] (any address)."""
    entries = text.replace(",", " ").split() if isinstance(text, str) else list(text or [])
    if len(entries) > MAX_ALLOWED_NETWORKS:
        raise ApplicationError(
            f"List at most {MAX_ALLOWED_NETWORKS} addresses or networks.", {"field": "allowed_networks"}
        )
    networks: list[str] = []
    for entry in entries:
        entry = str(entry).strip()
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ApplicationError(
                    f"{entry[:60]!r} is not an IP address or a CIDR network such as 203.0.113.0/24.",
                    {"field": "allowed_networks"},
                ) from None
            raise ApplicationError(
                f"{entry[:60]} has host bits set: did you mean {loose}?", {"field": "allowed_networks"}
            ) from None
        canonical = str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)
        if canonical not in networks:
            networks.append(canonical)
    return networks


def api_key_create(
    *,
    user: User,
    label: str,
    scopes: Iterable[str] = (ApiKeyScope.FULL,),
    daily_spend_cap: int | None = None,
    allowed_networks: Iterable[str] = (),
) -> tuple[ApiKey, str]:
    """A new key for `user`: the row and the full key, which is never available again.
    `daily_spend_cap` is micro-USD (None: no cap); `allowed_networks` as `allowed_networks_parse`."""
    label = _clean_label(label)
    scopes = scopes_clean(scopes)
    networks = allowed_networks_parse(list(allowed_networks))
    if daily_spend_cap is not None and not 0 < daily_spend_cap <= MAX_DAILY_SPEND_CAP:
        raise ApplicationError("A daily cap is above zero and at most $1,000,000.00.", {"field": "daily_spend_cap"})
    if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_KEYS:
        raise ApplicationError(
            f"You have {MAX_ACTIVE_KEYS} active keys, the most allowed. Revoke one you no longer use.",
            {"field": "label"},
            status=409,
        )
    for _attempt in range(3):
        raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    user=user,
                    label=label,
                    prefix=raw_key[:PREFIX_LENGTH],
                    key_hash=key_hash(raw_key),
                    scopes=scopes,
                    daily_spend_cap=daily_spend_cap,
                    allowed_networks=networks,
                )
        except IntegrityError:  # the 8-character prefix is unique; a clash is rare but possible
            continue
        return api_key, raw_key
    raise RuntimeError("could not generate a unique API key prefix")


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """The user's keys, newest first, each with `spent_today` (micro-USD committed today, UTC)."""
    today = ApiKeySpend.objects.filter(api_key=OuterRef("pk"), day=_utc_day(clock.now())).values("amount")[:1]
    return (
        ApiKey.objects.filter(user=user)
        .annotate(spent_today=Coalesce(Subquery(today), Value(0)))
        .order_by("-created_at", "-id")
    )


def get_api_key_for_user(*, user: User, key_id: int) -> ApiKey:
    """The user's own key; another user's key is a 404, as if it did not exist."""
    api_key = ApiKey.objects.filter(user=user, id=key_id).first()
    if api_key is None:
        raise Http404("No such API key.")
    return api_key


def api_key_revoke(*, user: User, key_id: int) -> ApiKey:
    """Revoke one of the user's keys (revoking twice keeps the first time)."""
    api_key = get_api_key_for_user(user=user, key_id=key_id)
    ApiKey.objects.filter(id=api_key.id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    return api_key


def api_keys_revoke(*, key_ids: list[int]) -> int:
    """Revoke these keys, whoever owns them (the admin's action); how many were still active."""
    return ApiKey.objects.filter(id__in=key_ids, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key (with its active user), or None. Marks the key used (at most once a minute)."""
    if not raw_key.startswith(KEY_PREFIX) or len(raw_key) > MAX_KEY_LENGTH:
        return None
    api_key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=key_hash(raw_key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(id=api_key.id).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def api_key_allows_address(api_key: ApiKey, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    """Whether the key may be used from `ip` (any address when it lists no networks)."""
    if not api_key.allowed_networks:
        return True
    if ip is None:
        return False
    return any(ip in ipaddress.ip_network(network) for network in api_key.allowed_networks)


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def api_key_spent_today(*, api_key: ApiKey) -> int:
    """micro-USD the key committed today (UTC)."""
    spend = ApiKeySpend.objects.filter(api_key=api_key, day=_utc_day(clock.now())).first()
    return spend.amount if spend else 0


def api_key_spend_reserve(*, api_key_id: int, amount: int) -> int | None:
    """Count `amount` (micro-USD, a deployment's hold) against the key's cap for today, or refuse
    with a 403 when it would go over. Returns the day's spend row to release from if the deployment
    is not created after all (None: the key has no cap, nothing counted)."""
    now = clock.now()
    day = _utc_day(now)
    with transaction.atomic():
        # The key's row is the lock: two parallel starts of one key are counted one after the other.
        api_key = ApiKey.objects.select_for_update().get(id=api_key_id)
        cap = api_key.daily_spend_cap
        if cap is None:
            return None
        spend, _created = ApiKeySpend.objects.get_or_create(api_key=api_key, day=day)
        if spend.amount + amount > cap:
            resets_at = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
            raise ApplicationError(
                f"This key may commit at most {format_usd(cap, places=2)} a day to deployments; it has "
                f"committed {format_usd(spend.amount, places=2)} today (UTC) and this deployment would hold "
                f"{format_usd(amount, places=2)}. Raise the key's daily cap on the API keys page, or wait "
                f"until {resets_at:%Y-%m-%d %H:%M} UTC.",
                {
                    "daily_spend_cap_micros": cap,
                    "spent_today_micros": spend.amount,
                    "needed_micros": amount,
                    "resets_at": resets_at.isoformat(),
                },
                status=403,
            )
        ApiKeySpend.objects.filter(id=spend.id).update(amount=F("amount") + amount)
    return spend.id


def api_key_spend_release(*, spend_id: int, amount: int) -> None:
    """Give back what `api_key_spend_reserve` counted for a deployment that was not created."""
    ApiKeySpend.objects.filter(id=spend_id, amount__gte=amount).update(amount=F("amount") - amount)
