"""Payout address checks: EVM addresses with their EIP-55 checksum, Solana addresses as base58."""

from __future__ import annotations

import re

from eth_utils import is_checksum_address, to_checksum_address
from solders.pubkey import Pubkey

from core.errors import ApplicationError

EVM_HEX = re.compile(r"^0x[0-9a-fA-F]{40}$")
BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


def evm_address_clean(value: str, *, field: str = "payout_evm_address") -> str:
    """A checksummed EVM address. All-lowercase input (no checksum) is accepted and checksummed;
    mixed case must carry a valid EIP-55 checksum, since a typo there is the mistake it catches."""
    value = (value or "").strip()
    if not EVM_HEX.match(value):
        raise ApplicationError("Enter an EVM address: 0x followed by 40 hexadecimal digits.", {"field": field})
    if value[2:].lower() == "0" * 40:
        raise ApplicationError("The zero address cannot receive payouts.", {"field": field})
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise ApplicationError(
            "This EVM address fails its EIP-55 checksum: check it for a typo (copy it from your wallet).",
            {"field": field},
        )
    return to_checksum_address(value)


def solana_address_clean(value: str, *, field: str = "payout_solana_address") -> str:
    value = (value or "").strip()
    if not BASE58.match(value):
        raise ApplicationError(
            "Enter a Solana address: 32 to 44 base58 characters (no 0, O, I or l).", {"field": field}
        )
    try:
        Pubkey.from_string(value)
    except ValueError:
        raise ApplicationError(
            "This is not a valid Solana address (it must decode to 32 bytes).", {"field": field}
        ) from None
    return value
