"""USD credits are integer micro-dollars; Decimal appears only for rates and display."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

MICROS_PER_USD = 1_000_000
HOURS_PER_MONTH = 730  # 365 * 24 / 12, the convention cloud price lists use


# A money amount as people write it: ASCII digits (Python's `\d`, int() and Decimal() also read
# Arabic-Indic or full-width digits), an optional sign and decimal point, no exponent, bounded
# length, so nothing converts a thousand digits or a huge exponent.
PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]{1,15}(?:\.[0-9]{0,15})?|[+-]?\.[0-9]{1,15}", re.ASCII)


def parse_plain_decimal(text: str) -> Decimal | None:
    """'1.25' -> Decimal('1.25'); None for anything that is not a plain ASCII decimal number."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    text = text.strip()
    return Decimal(text) if PLAIN_DECIMAL.fullmatch(text) else None


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


def exact_usd(micros: int) -> str:
    """Micro-dollars as an exact decimal string with 6 places, for APIs and CSV:
    175000 -> '0.175000', -1500000 -> '-1.500000'."""
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    return f"{sign}{micros // 1_000_000}.{micros % 1_000_000:06d}"


def exact_usd_or_none(micros: int | None) -> str | None:
    """`exact_usd`, or None for an amount not known (an API's null)."""
    return None if micros is None else exact_usd(micros)
