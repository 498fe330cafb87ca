"""Writes of the chain app: deposit references, a watcher run per chain, a pasted hash checked.

Crediting is billing's (billing.deposits): after a run that made deposits final, the handlers
registered with chain.hooks run (billing credits them at once).
"""

from __future__ import annotations

import logging
import re
import secrets

from django.db import IntegrityError, transaction

from accounts.models import User
from chain import hooks
from chain.evm import client as evm_client
from chain.evm.watcher import WatchResult, evm_tx_check, evm_watch
from chain.models import Chain, ChainKind, Deposit, DepositReference
from chain.solana import scan as solana_scan
from chain.solana import watcher as solana_watcher
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

EVM_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


def reference_for(user: User) -> DepositReference:
    """The user's deposit reference, created on first use: 32 random bytes, unrelated to the id."""
    existing = DepositReference.objects.filter(user=user).first()
    if existing is not None:
        return existing
    for _ in range(3):
        try:
            with transaction.atomic():
                return DepositReference.objects.create(user=user, ref="0x" + secrets.token_bytes(32).hex())
        except IntegrityError:  # created at the same moment by another request (or, never, a collision)
            existing = DepositReference.objects.filter(user=user).first()
            if existing is not None:
                return existing
    raise RuntimeError("could not create a deposit reference")


def chain_watch(*, chain_key: str) -> WatchResult | None:
    """One watcher run for an enabled chain; None when the chain is off or has no watcher here."""
    chain = Chain.objects.filter(key=chain_key, enabled=True).first()
    if chain is None:
        return None
    if chain.kind == ChainKind.SOLANA:
        if not (chain.treasury_address and chain.rpc_url):
            return None
        result = solana_watcher.solana_watch(chain)
    elif not chain.receiver_address:
        return None
    else:
        result = evm_watch(chain, evm_client.client_for(chain))
    if result.final:
        hooks.deposits_final_notify()
    return result


def _chain_for_check(chain_key: str) -> Chain:
    chain = Chain.objects.filter(key=chain_key, enabled=True).first() if isinstance(chain_key, str) else None
    if chain is None:
        known = ", ".join(Chain.objects.filter(enabled=True).values_list("key", flat=True)) or "none"
        raise ApplicationError(
            f"Unknown chain {chain_key!r}. Chains that take deposits: {known}.", {"field": "chain"}, status=404
        )
    return chain


def deposit_check(*, chain_key: str, tx_hash: str) -> list[Deposit]:
    """Check one transaction at once, by the watcher's own code: store its deposits, and if they have
    enough confirmations re-read and finalize them (billing credits them right after)."""
    chain = _chain_for_check(chain_key)
    if chain.kind == ChainKind.SOLANA:
        return _solana_check(chain, tx_hash)
    tx_hash = tx_hash.strip() if isinstance(tx_hash, str) else ""
    if not EVM_TX_HASH.fullmatch(tx_hash):
        raise ApplicationError(
            "A transaction hash is 0x followed by 64 hexadecimal digits.", {"field": "tx_hash"}, status=422
        )
    tx_hash = tx_hash.lower()
    try:
        client = evm_client.client_for(chain)
        tx = client.tx_deposits(tx_hash, chain.receiver_address)
        if tx is None:
            raise ApplicationError(
                f"No transaction {tx_hash} on {chain.name}: not mined yet, or sent on another chain.",
                {"field": "tx_hash"},
                status=404,
            )
        if not tx.succeeded:
            raise ApplicationError(
                f"Transaction {tx_hash} failed on {chain.name}: nothing was paid.", {"field": "tx_hash"}, status=422
            )
        if not tx.deposits:
            raise ApplicationError(
                f"Transaction {tx_hash} is not a deposit to Spheron's receiver on {chain.name}.",
                {"field": "tx_hash", "receiver": chain.receiver_address},
                status=422,
            )
        result, ids = evm_tx_check(chain, client, tx)
    except evm_client.ChainUnavailable:
        raise ApplicationError(
            f"{chain.name} cannot be reached right now; try again in a minute.", {"chain": chain.key}, status=503
        ) from None
    if result.final:
        hooks.deposits_final_notify()
    return list(Deposit.objects.filter(id__in=ids).select_related("chain", "token").order_by("log_index"))


def _solana_check(chain: Chain, signature: str) -> list[Deposit]:
    signature = signature.strip() if isinstance(signature, str) else ""
    try:
        result, ids = solana_watcher.solana_signature_check(chain, signature)
    except solana_scan.InvalidSignature:
        raise ApplicationError(
            "A Solana transaction signature is 64 bytes in base58 (87 or 88 characters).",
            {"field": "tx_hash"},
            status=422,
        ) from None
    except solana_scan.SignatureNotFound:
        raise ApplicationError(
            f"No transaction {signature} on {chain.name}: not confirmed yet, or sent on another cluster.",
            {"field": "tx_hash"},
            status=404,
        ) from None
    except solana_scan.TransactionFailed:
        raise ApplicationError(
            f"Transaction {signature} failed on {chain.name}: nothing was paid.", {"field": "tx_hash"}, status=422
        ) from None
    except solana_watcher.SolanaUnavailable:
        raise ApplicationError(
            f"{chain.name} cannot be reached right now; try again in a minute.", {"chain": chain.key}, status=503
        ) from None
    if not ids:
        raise ApplicationError(
            f"Transaction {signature} is not a SOL transfer to Spheron's treasury on {chain.name}.",
            {"field": "tx_hash", "treasury": chain.treasury_address},
            status=422,
        )
    if result.final:
        hooks.deposits_final_notify()
    return list(Deposit.objects.filter(id__in=ids).select_related("chain", "token").order_by("log_index"))
