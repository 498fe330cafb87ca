"""Keyset-pagination cursors: opaque URL-safe strings carrying the sort key of the last row shown.
Each caller chooses its fields and checks their values; this is the encoding and the id bounds."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from typing import Any

MAX_ROW_ID = 2**63 - 1  # a database bigint: a larger id overflows there


def encode_cursor(fields: dict[str, Any]) -> str:
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a cursor value")


def cursor_fields(cursor: str, keys: Collection[str]) -> dict[str, Any] | None:
    """The fields of a cursor `encode_cursor` made, when they are exactly `keys`; None for any
    other string (the caller says it is not a cursor it returned)."""
    try:
        # NaN and Infinity are not JSON, and would compare with nothing in the database.
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), parse_constant=_no_constant)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and set(data) == set(keys) else None


def is_row_id(value: Any) -> bool:
    """A row id a cursor may name: a positive integer a database bigint holds (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ROW_ID
