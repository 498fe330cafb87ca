"""SOL deposits to the treasury, read through the Solana JSON-RPC API (solana-py's AsyncClient
over HTTP), so the same code reads the local devnet (`chain.solana.devnet`) and a real RPC.

A deposit is a top-level System Program transfer to the treasury in a successful transaction;
the reference travels in an SPL Memo instruction of the same transaction. The scanner returns
what it found as plain `SolanaTransfer`s; matching the memo to a user's reference and writing
`Deposit` rows is the caller's job.

Reads use the `confirmed` commitment, so a transfer is seen about a slot after it lands, and each
transfer carries `finalized` (the cluster's `finalized` confirmation status): credit only those.

The public functions are synchronous (Celery tasks and views call them); each runs its own event
loop with `asyncio.run`, so do not call them from inside a running loop (use the `*_async`
variants there).

Not read: transfers made by another program through CPI (inner instructions), `transferWithSeed`
and SPL-token transfers; each is a different kind of deposit.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

from chain.solana.base58 import b58decode

MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
MEMO_PROGRAM_IDS = frozenset({str(MEMO_PROGRAM_ID), "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"})
PAGE_SIZE = 1000  # getSignaturesForAddress's maximum
DEFAULT_SCAN_LIMIT = 1000
RPC_TIMEOUT_SECONDS = 30.0


class SolanaRpcError(Exception):
    """The RPC could not be reached or answered with an error."""


class InvalidSignature(SolanaRpcError, ValueError):
    """Not a base58 transaction signature (what a user pasted is malformed)."""


class SignatureNotFound(SolanaRpcError):
    """The RPC knows no confirmed transaction with this signature (yet)."""


class TransactionFailed(SolanaRpcError):
    """The transaction is on chain but failed: it moved no lamports to anyone."""


@dataclass(frozen=True)
class SolanaTransfer:
    """One SOL transfer to the treasury. `instruction_index` (top-level) tells apart several
    transfers in one transaction; `(signature, instruction_index)` is unique. `memo` is the text
    of the transaction's first Memo instruction, unchecked, or None without one."""

    signature: str
    slot: int
    block_time: int | None
    payer: str
    recipient: str
    lamports: int
    memo: str | None
    finalized: bool
    instruction_index: int


def parse_signature(signature: str) -> Signature:
    try:
        return Signature.from_string(signature.strip())
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidSignature(f"not a Solana transaction signature: {signature!r}") from exc


def _pubkey(address: str) -> Pubkey:
    try:
        return Pubkey.from_string(address)
    except ValueError as exc:
        raise ValueError(f"not a Solana address: {address!r}") from exc


def _instruction_memo(instruction: dict[str, Any]) -> str | None:
    if instruction.get("programId") not in MEMO_PROGRAM_IDS:
        return None
    if isinstance(instruction.get("parsed"), str):
        return instruction["parsed"]
    data = instruction.get("data")  # partially decoded: not valid UTF-8 for the RPC's parser
    if isinstance(data, str):
        return b58decode(data).decode("utf-8", errors="replace")
    return None


def transfers_in_transaction(transaction: dict[str, Any], treasury: str, *, finalized: bool) -> list[SolanaTransfer]:
    """The SOL transfers to `treasury` in one getTransaction answer (jsonParsed encoding)."""
    meta = transaction.get("meta") or {}
    if meta.get("err") is not None:
        return []
    inner = transaction["transaction"]
    signature = inner["signatures"][0]
    instructions = inner["message"]["instructions"]
    memo = next((m for m in (_instruction_memo(ix) for ix in instructions) if m is not None), None)
    transfers = []
    for index, instruction in enumerate(instructions):
        if instruction.get("programId") != str(SYSTEM_PROGRAM_ID):
            continue
        parsed = instruction.get("parsed")
        if not isinstance(parsed, dict) or parsed.get("type") != "transfer":
            continue
        info = parsed["info"]
        if info.get("destination") != treasury:
            continue
        transfers.append(
            SolanaTransfer(
                signature=signature,
                slot=transaction["slot"],
                block_time=transaction.get("blockTime"),
                payer=info["source"],
                recipient=info["destination"],
                lamports=int(info["lamports"]),
                memo=memo,
                finalized=finalized,
                instruction_index=index,
            )
        )
    return transfers


class _Rpc:
    """An AsyncClient whose errors are SolanaRpcError."""

    def __init__(self, rpc_url: str) -> None:
        self.client = AsyncClient(rpc_url, commitment=Confirmed, timeout=RPC_TIMEOUT_SECONDS)

    async def __aenter__(self) -> _Rpc:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.client.close()

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.client, method)(*args, **kwargs)
        except RPCException as exc:
            raise SolanaRpcError(f"Solana RPC {method} failed: {exc}") from exc
        except SolanaRpcException as exc:
            raise SolanaRpcError(f"Solana RPC {method} unreachable: {exc}") from exc

    async def transaction(self, signature: Signature) -> dict[str, Any] | None:
        answer = await self(
            "get_transaction",
            signature,
            encoding="jsonParsed",
            commitment=Confirmed,
            max_supported_transaction_version=0,
        )
        if answer.value is None:
            return None
        return json.loads(answer.value.to_json())


async def scan_transfers_async(
    rpc_url: str,
    treasury: str,
    *,
    until_signature: str | None = None,
    limit: int = DEFAULT_SCAN_LIMIT,
) -> list[SolanaTransfer]:
    """See `scan_transfers`."""
    treasury_key = _pubkey(treasury)
    until = parse_signature(until_signature) if until_signature else None
    found: list[SolanaTransfer] = []
    async with _Rpc(rpc_url) as rpc:
        entries: list[Any] = []
        before = None
        while len(entries) < limit:
            wanted = min(PAGE_SIZE, limit - len(entries))
            page = (
                await rpc(
                    "get_signatures_for_address",
                    treasury_key,
                    before=before,
                    until=until,
                    limit=wanted,
                    commitment=Confirmed,
                )
            ).value
            entries.extend(page)
            if len(page) < wanted:
                break
            before = page[-1].signature
        for entry in entries:
            if entry.err is not None:
                continue
            transaction = await rpc.transaction(entry.signature)
            if transaction is None:  # pruned from the RPC's history since the listing
                continue
            finalized = entry.confirmation_status == TransactionConfirmationStatus.Finalized
            found.extend(transfers_in_transaction(transaction, treasury, finalized=finalized))
    return found


def scan_transfers(
    rpc_url: str,
    treasury: str,
    *,
    until_signature: str | None = None,
    limit: int = DEFAULT_SCAN_LIMIT,
) -> list[SolanaTransfer]:
    """SOL transfers to `treasury`, newest first, from the newest confirmed transaction back to
    (not including) `until_signature`, at most `limit` transactions read. Finality only moves
    forward in slot order, so a watcher's cursor (the next `until_signature`) is the signature
    of the newest *finalized* transfer it has stored: unfinalized ones are then read again on
    the next scan, until they are finalized (or, if they were dropped, no longer listed)."""
    return asyncio.run(scan_transfers_async(rpc_url, treasury, until_signature=until_signature, limit=limit))


async def check_signature_async(rpc_url: str, treasury: str, signature: str) -> list[SolanaTransfer]:
    """See `check_signature`."""
    parsed = parse_signature(signature)
    _pubkey(treasury)
    async with _Rpc(rpc_url) as rpc:
        transaction = await rpc.transaction(parsed)
        if transaction is None:
            raise SignatureNotFound(f"no confirmed Solana transaction {signature}")
        if (transaction.get("meta") or {}).get("err") is not None:
            raise TransactionFailed(f"Solana transaction {signature} failed on chain")
        statuses = (await rpc("get_signature_statuses", [parsed], search_transaction_history=True)).value
    status = statuses[0]
    finalized = status is not None and status.confirmation_status == TransactionConfirmationStatus.Finalized
    return transfers_in_transaction(transaction, treasury, finalized=finalized)


def check_signature(rpc_url: str, treasury: str, signature: str) -> list[SolanaTransfer]:
    """The SOL transfers to `treasury` in one pasted transaction (empty if it pays someone
    else). Raises InvalidSignature (malformed), SignatureNotFound (unknown or not yet
    confirmed), TransactionFailed, or SolanaRpcError (RPC unreachable or erring)."""
    return asyncio.run(check_signature_async(rpc_url, treasury, signature))


def transfer_transaction(
    payer: Keypair, treasury: str, lamports: int, memo: str | None, blockhash: Hash
) -> VersionedTransaction:
    """A signed transfer of `lamports` to `treasury`, with `memo` in a Memo instruction (the way
    Solana Pay wallets send a reference)."""
    instructions = [
        transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=_pubkey(treasury), lamports=lamports))
    ]
    if memo is not None:
        instructions.append(Instruction(MEMO_PROGRAM_ID, memo.encode(), []))
    message = Message.new_with_blockhash(instructions, payer.pubkey(), blockhash)
    return VersionedTransaction(message, [payer])


async def send_transfer_async(rpc_url: str, payer: Keypair, treasury: str, lamports: int, memo: str | None) -> str:
    """See `send_transfer`."""
    async with _Rpc(rpc_url) as rpc:
        blockhash = (await rpc("get_latest_blockhash", Confirmed)).value.blockhash
        transaction = transfer_transaction(payer, treasury, lamports, memo, blockhash)
        answer = await rpc(
            "send_transaction",
            transaction,
            opts=TxOpts(skip_confirmation=True, preflight_commitment=Confirmed),
        )
    return str(answer.value)


def send_transfer(rpc_url: str, payer: Keypair, treasury: str, lamports: int, memo: str | None = None) -> str:
    """Send SOL to the treasury with an optional memo; returns the signature at once (not
    waiting for confirmation). For tests and the devnet demo: production deposits come from the
    user's wallet."""
    return asyncio.run(send_transfer_async(rpc_url, payer, treasury, lamports, memo))


async def request_airdrop_async(rpc_url: str, address: str, lamports: int) -> str:
    async with _Rpc(rpc_url) as rpc:
        answer = await rpc("request_airdrop", _pubkey(address), lamports, Confirmed)
    return str(answer.value)


def request_airdrop(rpc_url: str, address: str, lamports: int) -> str:
    """Fund `address` on a devnet (or a public test cluster's faucet); returns the signature."""
    return asyncio.run(request_airdrop_async(rpc_url, address, lamports))


async def get_balance_async(rpc_url: str, address: str) -> int:
    async with _Rpc(rpc_url) as rpc:
        return (await rpc("get_balance", _pubkey(address), Confirmed)).value


def get_balance(rpc_url: str, address: str) -> int:
    """Lamports held by `address` (confirmed)."""
    return asyncio.run(get_balance_async(rpc_url, address))


async def current_slot_async(rpc_url: str) -> int:
    async with _Rpc(rpc_url) as rpc:
        return (await rpc("get_slot", Confirmed)).value


def current_slot(rpc_url: str) -> int:
    """The cluster's newest confirmed slot (the watcher counts a deposit's age in slots from it)."""
    return asyncio.run(current_slot_async(rpc_url))
