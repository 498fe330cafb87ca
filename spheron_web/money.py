"""USD credits are integer micro-dollars; Decimal appears only for rates and display."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MICROS_PER_USD = 1_000_000
HOURS_PER_MONTH = 730  # 365 * 24 / 12, the convention cloud price lists use


def usd_to_micros(amount: Decimal) -> int:
    """Exact USD amount (at most 6 decimal places after rounding half-up) to micro-dollars."""
    return int((amount * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def micros_to_usd(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_USD).quantize(Decimal("0.000001"))


def format_usd(micros: int, places: int = 3) -> str:
    """For display: '$0.175'. Keeps at least two places, more when the amount needs them."""
    value = micros_to_usd(micros).normalize()
    exponent = -value.as_tuple().exponent if value.as_tuple().exponent < 0 else 0  # type: ignore[operator]
    shown = max(2, min(places, exponent))
    return f"${value:,.{shown}f}"
