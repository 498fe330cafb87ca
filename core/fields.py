"""Model fields shared by the apps."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models

BASE_UNITS_DIGITS = 78  # a uint256 has at most 78 decimal digits


class BaseUnitsField(models.DecimalField):
    """Whole base units of a chain's token (wei, lamports): up to 78 digits, exact on every database.

    PostgreSQL keeps `numeric(78, 0)`. SQLite (the embedded default) cannot: its NUMERIC affinity
    turns integers past 2**63 into floats, and Django reads decimals back through a 15-digit float
    context, so 0.0068027210884 ETH in wei came back rounded. There the value is stored as text,
    zero-padded to 78 digits, so that equality, ordering and range lookups still compare numbers.
    Values are never negative (amounts and balances of base units).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["max_digits"] = BASE_UNITS_DIGITS
        kwargs["decimal_places"] = 0
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_digits", None)
        kwargs.pop("decimal_places", None)
        return name, path, args, kwargs

    def get_internal_type(self) -> str:
        # Not "DecimalField": the backends' decimal converters (SQLite's rounds to 15 digits) are
        # keyed on it. db_type, the adapter and the converter are this field's own.
        return "BaseUnitsField"

    def db_type(self, connection) -> str:
        if connection.vendor == "sqlite":
            return "text"
        return f"numeric({BASE_UNITS_DIGITS}, 0)"

    def get_db_prep_value(self, value: Any, connection, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if value is None or hasattr(value, "as_sql"):
            return value
        number = int(Decimal(value))
        if connection.vendor == "sqlite":
            if number < 0:
                raise ValueError(f"{self.name}: base units cannot be negative ({number})")
            return str(number).zfill(BASE_UNITS_DIGITS)
        return Decimal(number)

    def from_db_value(self, value: Any, expression, connection) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))
