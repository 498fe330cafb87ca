"""USD rates behind one interface: `quote(symbol)`.

The source is the `Rate` table that operators maintain in the admin (each row with the time the
price was true). A rate older than CHAIN_RATE_MAX_AGE_SECONDS gives no quote: the page shows no
amount to send and says why. That stops quoting, not crediting: a deposit keeps the rate recorded
when it was first seen (chain.services), however old that rate becomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_UP, Decimal

from django.conf import settings
from django.utils import timezone

from chain.models import Rate

MICROS = Decimal(1_000_000)


@dataclass(frozen=True)
class Quote:
    symbol: str
    usd_per_unit: Decimal
    at: datetime
    source: str


@dataclass(frozen=True)
class QuoteResult:
    quote: Quote | None
    reason: str  # why there is no quote; "" when there is one
    latest_at: datetime | None = None


def rate_latest(symbol: str) -> Rate | None:
    return Rate.objects.filter(symbol=symbol).order_by("-at", "-id").first()


def quote_or_reason(symbol: str, *, now: datetime | None = None) -> QuoteResult:
    rate = rate_latest(symbol)
    if rate is None:
        return QuoteResult(None, f"No {symbol} rate is known yet.")
    now = now or timezone.now()
    max_age = timedelta(seconds=settings.CHAIN_RATE_MAX_AGE_SECONDS)
    if now - rate.at > max_age:
        minutes = settings.CHAIN_RATE_MAX_AGE_SECONDS // 60
        return QuoteResult(
            None,
            f"The {symbol} rate is from {rate.at:%Y-%m-%d %H:%M} UTC, older than {minutes} minutes: "
            "no quote until it is updated.",
            rate.at,
        )
    return QuoteResult(Quote(symbol, rate.usd_per_unit, rate.at, rate.source), "", rate.at)


def quote(symbol: str, *, now: datetime | None = None) -> Quote | None:
    """The current USD price of one whole `symbol`, or None when unknown or stale."""
    return quote_or_reason(symbol, now=now).quote


def usd_micros_for(amount: Decimal | int, *, decimals: int, usd_per_unit: Decimal) -> int:
    """What `amount` base units are worth in micro-USD, rounded down (never credit more than came in)."""
    value = Decimal(amount) * usd_per_unit * MICROS / (Decimal(10) ** decimals)
    return int(value.to_integral_value(rounding=ROUND_DOWN))


def fee_micros_for(usd_micros: int, *, fee_bps: int) -> int:
    return int((Decimal(usd_micros) * fee_bps / Decimal(10_000)).to_integral_value(rounding=ROUND_HALF_UP))


def base_units_for(usd_micros: int, *, decimals: int, usd_per_unit: Decimal) -> int:
    """Base units to send for `usd_micros` gross, rounded up (the page's "amount to send")."""
    value = Decimal(usd_micros) * (Decimal(10) ** decimals) / (usd_per_unit * MICROS)
    return int(value.to_integral_value(rounding=ROUND_CEILING))
