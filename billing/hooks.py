"""Callbacks that higher apps register, so billing can call up without importing them."""

from __future__ import annotations

from collections.abc import Callable

# (reference_type, reference_id, reason) -> None; deployments register one to close the lease
# (reasons: insufficient_funds, expired).
CloseHandler = Callable[[str, str, str], None]
_insufficient_funds_handlers: list[CloseHandler] = []
# (user, meter) -> None: tell a renter their balance will not cover the next hour.
WarnHandler = Callable[[object, object], None]
_low_balance_handlers: list[WarnHandler] = []


def register_insufficient_funds_handler(handler: CloseHandler) -> None:
    if handler not in _insufficient_funds_handlers:
        _insufficient_funds_handlers.append(handler)


def register_low_balance_handler(handler: WarnHandler) -> None:
    if handler not in _low_balance_handlers:
        _low_balance_handlers.append(handler)


def insufficient_funds(reference_type: str, reference_id: str) -> None:
    for handler in list(_insufficient_funds_handlers):
        handler(reference_type, reference_id, "insufficient_funds")


def low_balance(user, meter) -> None:
    for handler in list(_low_balance_handlers):
        handler(user, meter)


def rental_expired(reference_type: str, reference_id: str) -> None:
    """A monthly reservation reached its end: the rental closes with reason "expired"."""
    for handler in list(_insufficient_funds_handlers):
        handler(reference_type, reference_id, "expired")
