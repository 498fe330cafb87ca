"""Linked wallets: a user proves control of an EVM address by signing a Sign-In with Ethereum
(EIP-4361) message, verified here with eth-account (EIP-191 `personal_sign`).

The `siwe` package would do the parsing, but it pins web3 < 8 and eth-account < 0.14, older than
ours, so the message is written and parsed here, strictly, for the fields of the EIP-4361 ABNF.
Every refusal is an ApplicationError with a message for a person (4xx), never a 500.

Flow: `wallet_nonce` issues a single-use nonce and the exact message to sign for one address, chain
and purpose; the wallet signs it; `wallet_link` checks the message (domain, times, chain, nonce)
and the signature, consumes the nonce and makes the address the user's current one for that
purpose. The previous link is revoked and kept as history.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from eth_utils import is_hex_address, to_checksum_address

from accounts.models import User, WalletLink, WalletNonce, WalletPurpose
from core.errors import ApplicationError
from core.eth import Account, encode_defunct

NONCE_TTL = timedelta(minutes=10)
CLOCK_SKEW = timedelta(seconds=60)  # a wallet's clock may run a little ahead of ours
MESSAGE_MAX_LENGTH = 4000
SIGNATURE_PATTERN = re.compile(r"\A0x[0-9a-fA-F]{130}\Z")  # 65 bytes: r, s, v
# The EVM chains a message may name (EIP-155 ids): the market's chains and Ethereum itself. An
# address is the same on every EVM chain; the chain id only records where the wallet was.
DEFAULT_CHAIN_IDS: dict[int, str] = {
    1: "Ethereum",
    8453: "Base",
    42161: "Arbitrum One",
    10: "OP Mainnet",
    56: "BNB Smart Chain",
    43114: "Avalanche C-Chain",
    324: "zkSync Era",
    314: "Filecoin",
}

# EIP-4361's ABNF, line by line. Optional fields keep the spec's order; the statement may be absent
# (then the address is followed by two empty lines).
_MESSAGE = re.compile(
    r"\A(?:(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*)://)?(?P<domain>[^\s/?#@]+)"
    r" wants you to sign in with your Ethereum account:\n"
    r"(?P<address>0x[0-9a-fA-F]{40})\n"
    r"\n"
    r"(?:(?P<statement>[^\n]+)\n)?"
    r"\n"
    r"URI: (?P<uri>[^\s]+)\n"
    r"Version: (?P<version>[^\n]+)\n"
    r"Chain ID: (?P<chain_id>[0-9]{1,20})\n"
    r"Nonce: (?P<nonce>[a-zA-Z0-9]{8,64})\n"
    r"Issued At: (?P<issued_at>[^\n]+)"
    r"(?:\nExpiration Time: (?P<expiration_time>[^\n]+))?"
    r"(?:\nNot Before: (?P<not_before>[^\n]+))?"
    r"(?:\nRequest ID: (?P<request_id>[^\n]*))?"
    r"(?:\nResources:(?P<resources>(?:\n- [^\n]+)*))?"
    r"\Z"
)
_RFC3339 = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})\Z")


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    statement: str
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None
    not_before: datetime | None


def known_chain_ids() -> dict[int, str]:
    return dict(getattr(settings, "WALLET_CHAIN_IDS", None) or DEFAULT_CHAIN_IDS)


def site_domain() -> str:
    """EIP-4361's domain: the authority (host and port) of SITE_URL, which the wallet compares with
    the page asking for the signature."""
    return urlsplit(settings.SITE_URL).netloc


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str, field: str) -> datetime:
    if not _RFC3339.match(value):
        raise ApplicationError(f"The message's {field} is not an RFC 3339 time.", {"field": "message"})
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApplicationError(f"The message's {field} is not a valid time.", {"field": "message"}) from None


def _checksummed(address: str, *, field: str = "address") -> str:
    if not isinstance(address, str) or not is_hex_address(address):
        raise ApplicationError("Give an EVM address: 0x and 40 hexadecimal digits.", {"field": field})
    return to_checksum_address(address)


def _purpose(purpose: str) -> str:
    if purpose not in WalletPurpose.values:
        raise ApplicationError('The purpose is "stake" or "payout".', {"field": "purpose"})
    return purpose


def _chain_id(chain_id: int) -> int:
    chains = known_chain_ids()
    if chain_id not in chains:
        names = ", ".join(f"{name} ({cid})" for cid, name in sorted(chains.items()))
        raise ApplicationError(
            f"Chain id {chain_id} is not a chain we know. Switch your wallet to one of: {names}.",
            {"field": "chain_id", "chain_ids": sorted(chains)},
        )
    return chain_id


def siwe_message_text(message: SiweMessage) -> str:
    lines = [
        f"{message.domain} wants you to sign in with your Ethereum account:",
        message.address,
        "",
        *([message.statement] if message.statement else []),
        "",
        f"URI: {message.uri}",
        f"Version: {message.version}",
        f"Chain ID: {message.chain_id}",
        f"Nonce: {message.nonce}",
        f"Issued At: {_timestamp(message.issued_at)}",
    ]
    if message.expiration_time is not None:
        lines.append(f"Expiration Time: {_timestamp(message.expiration_time)}")
    if message.not_before is not None:
        lines.append(f"Not Before: {_timestamp(message.not_before)}")
    return "\n".join(lines)


def siwe_parse(text: str) -> SiweMessage:
    """The EIP-4361 message in `text`, or an ApplicationError saying it is malformed."""
    if not isinstance(text, str) or not text or len(text) > MESSAGE_MAX_LENGTH or "\x00" in text:
        raise ApplicationError(
            f"Send the signed message as text (at most {MESSAGE_MAX_LENGTH} characters).", {"field": "message"}
        )
    match = _MESSAGE.match(text)
    if match is None:
        raise ApplicationError(
            "The message is not a Sign-In with Ethereum (EIP-4361) message: ask for a new one with "
            "POST /api/v1/wallets/nonce and sign it unchanged.",
            {"field": "message"},
        )
    fields = match.groupdict()
    if fields["version"] != "1":
        raise ApplicationError(f"Version {fields['version']} is not supported: only 1.", {"field": "message"})
    address = fields["address"]
    if to_checksum_address(address) != address:
        raise ApplicationError("The message's address is not in its EIP-55 checksummed form.", {"field": "message"})
    return SiweMessage(
        domain=fields["domain"],
        address=address,
        statement=fields["statement"] or "",
        uri=fields["uri"],
        version=fields["version"],
        chain_id=int(fields["chain_id"]),
        nonce=fields["nonce"],
        issued_at=_parse_time(fields["issued_at"], "Issued At"),
        expiration_time=_parse_time(fields["expiration_time"], "Expiration Time")
        if fields["expiration_time"]
        else None,
        not_before=_parse_time(fields["not_before"], "Not Before") if fields["not_before"] else None,
    )


def signature_signer(*, message: str, signature: str) -> str:
    """The checksummed address that signed `message` with EIP-191 (`personal_sign`)."""
    if not isinstance(signature, str) or not SIGNATURE_PATTERN.match(signature):
        raise ApplicationError(
            "The signature is not a 65-byte hexadecimal signature (0x and 130 digits).", {"field": "signature"}
        )
    try:
        return to_checksum_address(Account.recover_message(encode_defunct(text=message), signature=signature))
    except Exception:  # noqa: BLE001 - any failure to recover is a bad signature
        raise ApplicationError("The signature is not valid for this message.", {"field": "signature"}) from None


def wallet_statement(purpose: str) -> str:
    return f"Link this address to my Spheron account as its {purpose} wallet."


def wallet_nonce(*, user: User, address: str, chain_id: int, purpose: str) -> tuple[WalletNonce, str]:
    """A fresh single-use nonce for `user` and the exact EIP-4361 message to sign with `address`."""
    address = _checksummed(address)
    purpose = _purpose(purpose)
    chain_id = _chain_id(chain_id)
    now = timezone.now().replace(microsecond=0)
    nonce = WalletNonce.objects.create(
        user=user,
        nonce=secrets.token_hex(12),
        address=address,
        chain_id=chain_id,
        purpose=purpose,
        issued_at=now,
        expires_at=now + NONCE_TTL,
    )
    message = SiweMessage(
        domain=site_domain(),
        address=address,
        statement=wallet_statement(purpose),
        uri=settings.SITE_URL,
        version="1",
        chain_id=chain_id,
        nonce=nonce.nonce,
        issued_at=now,
        expiration_time=nonce.expires_at,
        not_before=None,
    )
    return nonce, siwe_message_text(message)


def wallet_link(*, user: User, message: str, signature: str, purpose: str) -> WalletLink:
    """Check the signed message and make its address the user's current `purpose` wallet."""
    purpose = _purpose(purpose)
    parsed = siwe_parse(message)
    if parsed.domain != site_domain():
        raise ApplicationError(
            f"The message was written for {parsed.domain}, not {site_domain()}: sign a message from this site.",
            {"field": "message"},
        )
    _chain_id(parsed.chain_id)
    now = timezone.now()
    if parsed.issued_at > now + CLOCK_SKEW:
        raise ApplicationError("The message's Issued At is in the future.", {"field": "message"})
    if parsed.expiration_time is not None and parsed.expiration_time <= now:
        raise ApplicationError("The message has expired: ask for a new one and sign it.", {"field": "message"})
    if parsed.not_before is not None and parsed.not_before > now + CLOCK_SKEW:
        raise ApplicationError("The message is not valid yet (Not Before).", {"field": "message"})
    nonce = WalletNonce.objects.filter(user=user, nonce=parsed.nonce).first()
    if nonce is None:
        raise ApplicationError(
            "The message's nonce was not issued to you: ask for a new message.", {"field": "message"}
        )
    if nonce.used_at is not None:
        raise ApplicationError(
            "The message's nonce was already used: ask for a new message.", {"field": "message"}, status=409
        )
    if nonce.expires_at <= now:
        raise ApplicationError("The message has expired: ask for a new one and sign it.", {"field": "message"})
    if nonce.purpose != purpose:
        raise ApplicationError(
            f"The message was issued to link a {nonce.purpose} wallet, not a {purpose} wallet.", {"field": "purpose"}
        )
    if nonce.address != parsed.address or nonce.chain_id != parsed.chain_id:
        raise ApplicationError(
            "The message's address or chain id differs from the one its nonce was issued for.", {"field": "message"}
        )
    signer = signature_signer(message=message, signature=signature)
    if signer != parsed.address:
        raise ApplicationError(f"The message was signed by {signer}, not by {parsed.address}.", {"field": "signature"})
    try:
        with transaction.atomic():
            # Single use: only the request that marks the nonce used goes on.
            if not WalletNonce.objects.filter(id=nonce.id, used_at__isnull=True).update(used_at=now):
                raise ApplicationError(
                    "The message's nonce was already used: ask for a new message.", {"field": "message"}, status=409
                )
            list(User.objects.select_for_update().filter(id=user.id))  # serialises a user's links
            WalletLink.objects.filter(user=user, purpose=purpose, revoked_at__isnull=True).update(revoked_at=now)
            return WalletLink.objects.create(
                user=user,
                address=parsed.address,
                purpose=purpose,
                chain_id=parsed.chain_id,
                message=message,
                signature=signature,
                linked_at=now,
            )
    except IntegrityError:
        raise ApplicationError(
            f"{parsed.address} is already the stake wallet of another account.", {"field": "message"}, status=409
        ) from None


def wallet_current(*, user: User) -> dict[str, WalletLink | None]:
    """The user's current link for each purpose (None where there is none)."""
    current: dict[str, WalletLink | None] = dict.fromkeys(WalletPurpose.values)
    for link in WalletLink.objects.filter(user=user, revoked_at__isnull=True):
        current[link.purpose] = link
    return current


def wallet_history(*, user: User) -> QuerySet[WalletLink]:
    return WalletLink.objects.filter(user=user).order_by("-linked_at", "-id")
