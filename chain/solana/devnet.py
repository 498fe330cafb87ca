"""A local Solana JSON-RPC endpoint backed by `solders.litesvm.LiteSVM`: the stand-in for a
validator on a developer machine and in tests.

It sits at the RPC boundary: clients (solana-py's `AsyncClient`, `chain.solana.scan`, a wallet)
speak the ordinary Solana JSON-RPC protocol over HTTP to it, so the same code talks to a real
RPC in production. It implements what deposits need, in the shapes the real RPC returns:

    requestAirdrop, getBalance, getLatestBlockhash, isBlockhashValid, sendTransaction (base58,
    base64), simulateTransaction (without account reporting), getSignatureStatuses,
    getSignaturesForAddress (newest first; before, until, limit), getTransaction (json,
    jsonParsed, base64, base58), getSlot, getBlockHeight, getBlockTime, getHealth, getVersion,
    getGenesisHash, getMinimumBalanceForRentExemption, getFeeForMessage.

Other methods answer JSON-RPC error -32601 (method not found).

Slots and finality. LiteSVM executes transactions at once and has no blocks, forks or votes, so
this server keeps the clock: a slot passes every `slot_ms` milliseconds (400 by default, as on
mainnet; 0 disables the ticker and a test calls `advance()`), LiteSVM's clock is warped to it with
the wall time as `unix_timestamp`, and each slot gets a fresh blockhash (valid for 150 slots, as
on mainnet). A transaction lands in the current slot. Commitment then depends only on age:

    processed   the slot it landed in
    confirmed   at least `confirmed_slots` (default 1) slots old
    finalized   at least `finality_slots` (default 4 here, ~1.6 s; mainnet roots ~32 slots) old

`commitment` is accepted on every method. It selects which transactions are visible
(getTransaction, getSignaturesForAddress, getSignatureStatuses) and which slot/blockhash is
reported (getSlot, getBlockHeight, getLatestBlockhash). Account state (getBalance) is always the
latest state: with no forks there is nothing to roll back. Block height equals the slot (no
skipped slots).

History. LiteSVM does not index transactions by address, so the server records every
transaction it processes (signature, slot, block time, transaction, fee, balances before and
after, logs, error) and answers the history methods from that record, in memory: a restart
starts from an empty ledger.

Memo. LiteSVM loads the SPL Memo programs (v1 `Memo1Uhk…` and v2 `MemoSq4g…`) with its default
programs, so a Memo instruction executes for real; jsonParsed renders it as the real RPC does
(`"program": "spl-memo", "parsed": "<text>"`).

Airdrops are real system transfers from a faucet keypair the server holds, so they appear in the
history like any other transfer.

Not modelled: address lookup tables (v0 messages that use them are refused), inner-instruction
parsing (`innerInstructions` is always empty), token balances, rewards, forks, and prioritisation
fees. Failed transactions sent with `skipPreflight` are recorded with their error, as a validator
would record them; without it they are refused with the simulation's error (-32002).

Run it: `python -m chain.solana.devnet --port 8899`. In tests: `start_devnet()`.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import TransactionStatus

from chain.solana.base58 import b58decode, b58encode

MEMO_PROGRAM_IDS = {
    "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",  # SPL Memo v2/v3
    "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo",  # SPL Memo v1
}
DEFAULT_SLOT_MS = 400
DEFAULT_FINALITY_SLOTS = 4
DEFAULT_CONFIRMED_SLOTS = 1
BLOCKHASH_VALID_SLOTS = 150  # MAX_PROCESSING_AGE on mainnet
MAX_SIGNATURES_FOR_ADDRESS = 1000
MAX_SIGNATURE_STATUSES = 256
FAUCET_LAMPORTS = 10**18  # a billion SOL; airdrops draw on it
SOLANA_CORE_VERSION = "2.2.0"

# JSON-RPC error codes the real RPC uses.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
PREFLIGHT_FAILURE = -32002
SIGNATURE_VERIFICATION_FAILURE = -32003
UNSUPPORTED_TRANSACTION_VERSION = -32015

logger = logging.getLogger(__name__)
_COMMITMENTS = ("processed", "confirmed", "finalized")


class RpcError(Exception):
    """A JSON-RPC error answer: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass
class _Record:
    """One processed transaction, as the history methods need it."""

    sequence: int
    signature: str
    slot: int
    block_time: int
    transaction: VersionedTransaction
    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    logs: list[str]
    compute_units: int
    err: Any  # JSON of the TransactionError, None on success
    memo_texts: list[str] = field(default_factory=list)


def _err_json(err: Any) -> Any:
    """A solders TransactionError as the RPC renders it (e.g. "BlockhashNotFound" or
    {"InstructionError": [0, {"Custom": 1}]})."""
    if err is None:
        return None
    return json.loads(TransactionStatus(0, None, err, err, None).to_json())["err"]


def _message_flags(message: Message | MessageV0) -> list[tuple[bool, bool]]:
    """(signer, writable) of each static account key, from the message header."""
    header = message.header
    keys = len(message.account_keys)
    signers = header.num_required_signatures
    writable_signers = signers - header.num_readonly_signed_accounts
    writable_unsigned_end = keys - header.num_readonly_unsigned_accounts
    flags = []
    for index in range(keys):
        if index < signers:
            flags.append((True, index < writable_signers))
        else:
            flags.append((False, index < writable_unsigned_end))
    return flags


def _parse_system_instruction(data: bytes, accounts: list[str]) -> dict[str, Any] | None:
    """The jsonParsed form of the system instructions deposits care about; None for others (they
    are then rendered partially decoded, which the real RPC also does for unknown programs)."""
    if len(data) < 4:
        return None
    kind = int.from_bytes(data[:4], "little")
    if kind == 2 and len(data) == 12 and len(accounts) >= 2:  # Transfer { lamports: u64 }
        lamports = int.from_bytes(data[4:12], "little")
        return {
            "type": "transfer",
            "info": {"source": accounts[0], "destination": accounts[1], "lamports": lamports},
        }
    return None


def _memo_text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class SolanaDevnet:
    """The ledger and the RPC methods; `serve()` / `start_devnet()` put it behind HTTP."""

    def __init__(
        self,
        *,
        slot_ms: int = DEFAULT_SLOT_MS,
        finality_slots: int = DEFAULT_FINALITY_SLOTS,
        confirmed_slots: int = DEFAULT_CONFIRMED_SLOTS,
    ) -> None:
        if finality_slots < confirmed_slots or confirmed_slots < 0:
            raise ValueError("need 0 <= confirmed_slots <= finality_slots")
        self.slot_ms = slot_ms
        self.finality_slots = finality_slots
        self.confirmed_slots = confirmed_slots
        self._lock = threading.RLock()
        # Blockhash age is checked here (per slot, 150 slots) rather than by LiteSVM, which only
        # accepts its single latest blockhash.
        self._svm = LiteSVM().with_blockhash_check(False)
        self._faucet = Keypair()
        self._svm.set_account(self._faucet.pubkey(), Account(FAUCET_LAMPORTS, b"", SYSTEM_PROGRAM_ID))
        self._genesis_hash = str(self._svm.latest_blockhash())
        self._slot = 0
        self._slot_times: dict[int, int] = {}
        self._blockhashes: dict[int, str] = {}  # slot -> blockhash
        self._blockhash_slots: dict[str, int] = {}  # blockhash -> slot
        self._records: dict[str, _Record] = {}
        self._by_address: dict[str, list[str]] = {}
        self._sequence = 0
        self._start_slot(0)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- the clock ---------------------------------------------------------------------------

    def _start_slot(self, slot: int) -> None:
        now = int(time.time())
        self._slot = slot
        clock = self._svm.get_clock()
        clock.slot = slot
        clock.unix_timestamp = now
        self._svm.set_clock(clock)
        if slot:
            self._svm.expire_blockhash()
        blockhash = str(self._svm.latest_blockhash())
        self._slot_times[slot] = now
        self._blockhashes[slot] = blockhash
        self._blockhash_slots[blockhash] = slot
        stale = slot - 2 * BLOCKHASH_VALID_SLOTS
        if stale in self._blockhashes:
            self._blockhash_slots.pop(self._blockhashes.pop(stale), None)

    def advance(self, slots: int = 1) -> int:
        """Let `slots` slots pass now (tests; the ticker calls it once per slot). Returns the
        current slot."""
        with self._lock:
            for _ in range(slots):
                self._start_slot(self._slot + 1)
            return self._slot

    def set_balance(self, address: Pubkey, lamports: int) -> None:
        """Give a system account a balance at genesis, as `solana-test-validator --account` does:
        no transaction, so nothing shows up in its history (an airdrop to a treasury would read as
        a deposit without a memo)."""
        with self._lock:
            self._svm.set_account(address, Account(lamports, b"", SYSTEM_PROGRAM_ID))

    @property
    def slot(self) -> int:
        return self._slot

    def start_ticker(self) -> None:
        if self.slot_ms <= 0 or self._ticker is not None:
            return

        def tick() -> None:
            while not self._stop.wait(self.slot_ms / 1000):
                self.advance(1)

        self._ticker = threading.Thread(target=tick, name="solana-devnet-slots", daemon=True)
        self._ticker.start()

    def stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None

    def _slot_at(self, commitment: str) -> int:
        if commitment == "processed":
            return self._slot
        depth = self.confirmed_slots if commitment == "confirmed" else self.finality_slots
        return max(self._slot - depth, 0)

    def _status_of(self, record: _Record) -> str:
        age = self._slot - record.slot
        if age >= self.finality_slots:
            return "finalized"
        if age >= self.confirmed_slots:
            return "confirmed"
        return "processed"

    def _visible(self, record: _Record, commitment: str) -> bool:
        return _COMMITMENTS.index(self._status_of(record)) >= _COMMITMENTS.index(commitment)

    # -- params ------------------------------------------------------------------------------

    @staticmethod
    def _config(params: list[Any], index: int) -> dict[str, Any]:
        if len(params) <= index or params[index] is None:
            return {}
        config = params[index]
        if not isinstance(config, dict):
            raise RpcError(INVALID_PARAMS, f"Invalid params: expected a config object at {index}")
        return config

    @staticmethod
    def _commitment(config: dict[str, Any], default: str = "finalized") -> str:
        commitment = config.get("commitment") or default
        # Deprecated aliases the real RPC still accepts.
        commitment = {"recent": "processed", "single": "confirmed", "max": "finalized"}.get(commitment, commitment)
        if commitment not in _COMMITMENTS:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown commitment {commitment!r}")
        return commitment

    @staticmethod
    def _pubkey(params: list[Any], index: int = 0) -> Pubkey:
        try:
            return Pubkey.from_string(params[index])
        except (IndexError, TypeError, ValueError) as exc:
            raise RpcError(INVALID_PARAMS, "Invalid param: Invalid") from exc

    @staticmethod
    def _signature(value: Any) -> str:
        try:
            return str(Signature.from_string(value))
        except (TypeError, ValueError) as exc:
            raise RpcError(INVALID_PARAMS, "Invalid param: Invalid") from exc

    def _context(self, commitment: str = "processed") -> dict[str, Any]:
        return {"slot": self._slot_at(commitment), "apiVersion": SOLANA_CORE_VERSION}

    # -- dispatch ----------------------------------------------------------------------------

    def call(self, method: str, params: Any) -> Any:
        """The result of one JSON-RPC call, or RpcError."""
        if params is None:
            params = []
        if not isinstance(params, list):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected an array")
        handler = getattr(self, f"rpc_{method}", None) if isinstance(method, str) else None
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        with self._lock:
            return handler(params)

    def rpc_getHealth(self, params: list[Any]) -> str:
        return "ok"

    def rpc_getVersion(self, params: list[Any]) -> dict[str, Any]:
        return {"solana-core": SOLANA_CORE_VERSION, "feature-set": 0}

    def rpc_getGenesisHash(self, params: list[Any]) -> str:
        return self._genesis_hash

    def rpc_getSlot(self, params: list[Any]) -> int:
        return self._slot_at(self._commitment(self._config(params, 0)))

    def rpc_getBlockHeight(self, params: list[Any]) -> int:
        return self.rpc_getSlot(params)

    def rpc_getBlockTime(self, params: list[Any]) -> int | None:
        if not params or not isinstance(params[0], int):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected a slot")
        return self._slot_times.get(params[0])

    def rpc_getBalance(self, params: list[Any]) -> dict[str, Any]:
        pubkey = self._pubkey(params)
        commitment = self._commitment(self._config(params, 1))
        return {"context": self._context(commitment), "value": self._svm.get_balance(pubkey) or 0}

    def rpc_getMinimumBalanceForRentExemption(self, params: list[Any]) -> int:
        if not params or not isinstance(params[0], int) or params[0] < 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: expected a data length")
        return self._svm.minimum_balance_for_rent_exemption(params[0])

    def rpc_getLatestBlockhash(self, params: list[Any]) -> dict[str, Any]:
        commitment = self._commitment(self._config(params, 0))
        slot = self._slot_at(commitment)
        return {
            "context": self._context(commitment),
            "value": {
                "blockhash": self._blockhashes[slot],
                "lastValidBlockHeight": slot + BLOCKHASH_VALID_SLOTS,
            },
        }

    def rpc_isBlockhashValid(self, params: list[Any]) -> dict[str, Any]:
        if not params or not isinstance(params[0], str):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected a blockhash")
        commitment = self._commitment(self._config(params, 1))
        return {"context": self._context(commitment), "value": self._blockhash_ok(params[0])}

    def rpc_getFeeForMessage(self, params: list[Any]) -> dict[str, Any]:
        if not params or not isinstance(params[0], str):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected a message")
        try:
            raw = base64.b64decode(params[0], validate=True)
            signatures = raw[0] if raw[0] < 0x80 else raw[1]  # header byte (legacy or v0)
        except (ValueError, IndexError) as exc:
            raise RpcError(INVALID_PARAMS, "Invalid params: bad message") from exc
        return {"context": self._context(), "value": 5000 * signatures}

    def _blockhash_ok(self, blockhash: str) -> bool:
        slot = self._blockhash_slots.get(blockhash)
        return slot is not None and self._slot - slot <= BLOCKHASH_VALID_SLOTS

    # -- sending -----------------------------------------------------------------------------

    def _decode_transaction(self, params: list[Any], config: dict[str, Any]) -> VersionedTransaction:
        if not params or not isinstance(params[0], str):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected an encoded transaction")
        encoding = config.get("encoding") or "base58"
        try:
            if encoding == "base64":
                raw = base64.b64decode(params[0], validate=True)
            elif encoding == "base58":
                raw = b58decode(params[0])
            else:
                raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported encoding {encoding}")
            transaction = VersionedTransaction.from_bytes(raw)
            transaction.sanitize()
        except RpcError:
            raise
        except Exception as exc:  # solders raises its own ParseError / SanitizeError types
            raise RpcError(INVALID_PARAMS, f"failed to deserialize VersionedTransaction: {exc}") from exc
        message = transaction.message
        if isinstance(message, MessageV0) and message.address_table_lookups:
            raise RpcError(INVALID_PARAMS, "address lookup tables are not supported by the devnet")
        return transaction

    def _preflight_error(self, err: Any, logs: list[str], units: int) -> RpcError:
        err_json = _err_json(err)
        return RpcError(
            PREFLIGHT_FAILURE,
            f"Transaction simulation failed: {err_json}",
            {
                "err": err_json,
                "logs": logs,
                "accounts": None,
                "unitsConsumed": units,
                "returnData": None,
                "innerInstructions": None,
            },
        )

    def _submit(self, transaction: VersionedTransaction, *, preflight: bool) -> str:
        signature = str(transaction.signatures[0])
        if not all(transaction.verify_with_results()):
            raise RpcError(SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure")
        if signature in self._records:
            raise RpcError(
                PREFLIGHT_FAILURE,
                "Transaction simulation failed: This transaction has already been processed",
                {"err": "AlreadyProcessed", "logs": [], "accounts": None, "unitsConsumed": 0},
            )
        if not self._blockhash_ok(str(transaction.message.recent_blockhash)):
            raise RpcError(
                PREFLIGHT_FAILURE,
                "Transaction simulation failed: Blockhash not found",
                {"err": "BlockhashNotFound", "logs": [], "accounts": None, "unitsConsumed": 0},
            )
        if preflight:
            simulated = self._svm.simulate_transaction(transaction)
            if isinstance(simulated, FailedTransactionMetadata):
                meta = simulated.meta()
                raise self._preflight_error(simulated.err(), list(meta.logs()), meta.compute_units_consumed())
        keys = list(transaction.message.account_keys)
        pre = [self._svm.get_balance(key) or 0 for key in keys]
        result = self._svm.send_transaction(transaction)
        if isinstance(result, FailedTransactionMetadata):
            meta, err = result.meta(), _err_json(result.err())
        else:
            meta, err = result, None
        post = [self._svm.get_balance(key) or 0 for key in keys]
        self._record(transaction, meta, err, pre, post)
        return signature

    def _record(
        self,
        transaction: VersionedTransaction,
        meta: Any,
        err: Any,
        pre: list[int],
        post: list[int],
    ) -> None:
        message = transaction.message
        keys = [str(key) for key in message.account_keys]
        memos = []
        for instruction in message.instructions:
            if keys[instruction.program_id_index] in MEMO_PROGRAM_IDS:
                text = _memo_text(bytes(instruction.data))
                if text is not None:
                    memos.append(text)
        self._sequence += 1
        signature = str(transaction.signatures[0])
        self._records[signature] = _Record(
            sequence=self._sequence,
            signature=signature,
            slot=self._slot,
            block_time=self._slot_times[self._slot],
            transaction=transaction,
            fee=meta.fee(),
            pre_balances=pre,
            post_balances=post,
            logs=list(meta.logs()),
            compute_units=meta.compute_units_consumed(),
            err=err,
            memo_texts=memos,
        )
        for key in dict.fromkeys(keys):
            self._by_address.setdefault(key, []).append(signature)

    def rpc_sendTransaction(self, params: list[Any]) -> str:
        config = self._config(params, 1)
        transaction = self._decode_transaction(params, config)
        return self._submit(transaction, preflight=not config.get("skipPreflight", False))

    def rpc_simulateTransaction(self, params: list[Any]) -> dict[str, Any]:
        config = self._config(params, 1)
        transaction = self._decode_transaction(params, config)
        simulated = self._svm.simulate_transaction(transaction)
        if isinstance(simulated, FailedTransactionMetadata):
            meta, err = simulated.meta(), _err_json(simulated.err())
        else:
            meta, err = simulated.meta(), None
        return {
            "context": self._context(),
            "value": {
                "err": err,
                "logs": list(meta.logs()),
                "accounts": None,
                "unitsConsumed": meta.compute_units_consumed(),
                "returnData": None,
            },
        }

    def rpc_requestAirdrop(self, params: list[Any]) -> str:
        pubkey = self._pubkey(params)
        if len(params) < 2 or not isinstance(params[1], int) or params[1] <= 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: expected lamports > 0")
        instruction = transfer(TransferParams(from_pubkey=self._faucet.pubkey(), to_pubkey=pubkey, lamports=params[1]))
        blockhash = Hash.from_string(self._blockhashes[self._slot])
        message = Message.new_with_blockhash([instruction], self._faucet.pubkey(), blockhash)
        transaction = VersionedTransaction(message, [self._faucet])
        return self._submit(transaction, preflight=True)

    # -- reading history ---------------------------------------------------------------------

    def rpc_getSignatureStatuses(self, params: list[Any]) -> dict[str, Any]:
        if not params or not isinstance(params[0], list):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected an array of signatures")
        if len(params[0]) > MAX_SIGNATURE_STATUSES:
            raise RpcError(INVALID_PARAMS, f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        statuses: list[dict[str, Any] | None] = []
        for value in params[0]:
            record = self._records.get(self._signature(value))
            if record is None:
                statuses.append(None)
                continue
            status = self._status_of(record)
            statuses.append(
                {
                    "slot": record.slot,
                    "confirmations": None if status == "finalized" else self._slot - record.slot,
                    "err": record.err,
                    "status": {"Ok": None} if record.err is None else {"Err": record.err},
                    "confirmationStatus": status,
                }
            )
        return {"context": self._context(), "value": statuses}

    def rpc_getSignaturesForAddress(self, params: list[Any]) -> list[dict[str, Any]]:
        address = str(self._pubkey(params))
        config = self._config(params, 1)
        commitment = self._commitment(config)
        if commitment == "processed":
            raise RpcError(INVALID_PARAMS, "Method does not support commitment below `confirmed`")
        limit = config.get("limit") or MAX_SIGNATURES_FOR_ADDRESS
        if not isinstance(limit, int) or not 1 <= limit <= MAX_SIGNATURES_FOR_ADDRESS:
            raise RpcError(INVALID_PARAMS, "Invalid limit; max 1000")
        before = self._signature(config["before"]) if config.get("before") else None
        until = self._signature(config["until"]) if config.get("until") else None
        newest_first = reversed(self._by_address.get(address, []))
        started = before is None
        entries = []
        for signature in newest_first:
            if not started:
                started = signature == before
                continue
            if signature == until or len(entries) >= limit:
                break
            record = self._records[signature]
            if not self._visible(record, commitment):
                continue
            entries.append(
                {
                    "signature": signature,
                    "slot": record.slot,
                    "err": record.err,
                    "memo": "; ".join(f"[{len(m)}] {m}" for m in record.memo_texts) or None,
                    "blockTime": record.block_time,
                    "confirmationStatus": self._status_of(record),
                }
            )
        return entries

    def rpc_getTransaction(self, params: list[Any]) -> dict[str, Any] | None:
        if not params:
            raise RpcError(INVALID_PARAMS, "Invalid params: expected a signature")
        signature = self._signature(params[0])
        if len(params) > 1 and isinstance(params[1], str):  # the old positional encoding form
            config = {"encoding": params[1]}
        else:
            config = self._config(params, 1)
        commitment = self._commitment(config)
        if commitment == "processed":
            raise RpcError(INVALID_PARAMS, "Method does not support commitment below `confirmed`")
        encoding = config.get("encoding") or "json"
        if encoding not in ("json", "jsonParsed", "base64", "base58"):
            raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported encoding {encoding}")
        max_version = config.get("maxSupportedTransactionVersion")
        record = self._records.get(signature)
        if record is None or not self._visible(record, commitment):
            return None
        transaction = record.transaction
        is_v0 = isinstance(transaction.message, MessageV0)
        if is_v0 and (max_version is None or max_version < 0):
            raise RpcError(
                UNSUPPORTED_TRANSACTION_VERSION,
                "Transaction version (0) is not supported by the requesting client. Please try "
                "the request again with the following configuration parameter: "
                '"maxSupportedTransactionVersion": 0',
            )
        if encoding == "base64":
            encoded: Any = [base64.b64encode(bytes(transaction)).decode(), "base64"]
        elif encoding == "base58":
            encoded = [b58encode(bytes(transaction)), "base58"]
        else:
            encoded = self._transaction_json(transaction, parsed=encoding == "jsonParsed")
        result: dict[str, Any] = {
            "slot": record.slot,
            "blockTime": record.block_time,
            "transaction": encoded,
            "meta": self._meta_json(record, parsed=encoding == "jsonParsed"),
        }
        if max_version is not None:
            result["version"] = 0 if is_v0 else "legacy"
        return result

    def _meta_json(self, record: _Record, *, parsed: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "err": record.err,
            "status": {"Ok": None} if record.err is None else {"Err": record.err},
            "fee": record.fee,
            "preBalances": record.pre_balances,
            "postBalances": record.post_balances,
            "innerInstructions": [],
            "logMessages": record.logs,
            "preTokenBalances": [],
            "postTokenBalances": [],
            "rewards": [],
            "computeUnitsConsumed": record.compute_units,
        }
        if not parsed:
            meta["loadedAddresses"] = {"writable": [], "readonly": []}
        return meta

    def _transaction_json(self, transaction: VersionedTransaction, *, parsed: bool) -> dict[str, Any]:
        message = transaction.message
        keys = [str(key) for key in message.account_keys]
        flags = _message_flags(message)
        instructions = []
        for instruction in message.instructions:
            data = bytes(instruction.data)
            account_indexes = list(bytes(instruction.accounts))
            program = keys[instruction.program_id_index]
            if not parsed:
                instructions.append(
                    {
                        "programIdIndex": instruction.program_id_index,
                        "accounts": account_indexes,
                        "data": b58encode(data),
                        "stackHeight": None,
                    }
                )
                continue
            accounts = [keys[index] for index in account_indexes]
            rendered = None
            if program == str(SYSTEM_PROGRAM_ID):
                parsed_system = _parse_system_instruction(data, accounts)
                if parsed_system is not None:
                    rendered = {"program": "system", "programId": program, "parsed": parsed_system}
            elif program in MEMO_PROGRAM_IDS:
                text = _memo_text(data)
                if text is not None:
                    rendered = {"program": "spl-memo", "programId": program, "parsed": text}
            if rendered is None:
                rendered = {"programId": program, "accounts": accounts, "data": b58encode(data)}
            rendered["stackHeight"] = None
            instructions.append(rendered)
        signatures = [str(signature) for signature in transaction.signatures]
        if parsed:
            rendered_message: dict[str, Any] = {
                "accountKeys": [
                    {"pubkey": key, "signer": signer, "writable": writable, "source": "transaction"}
                    for key, (signer, writable) in zip(keys, flags, strict=True)
                ],
                "recentBlockhash": str(message.recent_blockhash),
                "instructions": instructions,
            }
        else:
            header = message.header
            rendered_message = {
                "header": {
                    "numRequiredSignatures": header.num_required_signatures,
                    "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                    "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
                },
                "accountKeys": keys,
                "recentBlockhash": str(message.recent_blockhash),
                "instructions": instructions,
            }
        if isinstance(message, MessageV0):
            rendered_message["addressTableLookups"] = []
        return {"signatures": signatures, "message": rendered_message}


# -- HTTP ------------------------------------------------------------------------------------


def _answer(devnet: SolanaDevnet, request: Any) -> dict[str, Any]:
    request_id = request.get("id") if isinstance(request, dict) else None
    try:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or "method" not in request:
            raise RpcError(INVALID_REQUEST, "Invalid request")
        result = devnet.call(request["method"], request.get("params"))
    except RpcError as error:
        return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}
    except Exception as exc:  # a bug here must still answer, as a JSON-RPC internal error
        logger.exception("devnet RPC call failed")
        return {
            "jsonrpc": "2.0",
            "error": {"code": INTERNAL_ERROR, "message": f"Internal error: {exc}"},
            "id": request_id,
        }
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: httpx reuses the connection
    server: _Server

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:  # noqa: N802 (http.server's naming)
        self._send(204, b"")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            request = json.loads(raw)
        except ValueError:
            answer: Any = {
                "jsonrpc": "2.0",
                "error": {"code": PARSE_ERROR, "message": "Parse error"},
                "id": None,
            }
        else:
            if isinstance(request, list):
                answer = [_answer(self.server.devnet, item) for item in request]
            else:
                answer = _answer(self.server.devnet, request)
        self._send(200, json.dumps(answer).encode())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], devnet: SolanaDevnet, *, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.devnet = devnet
        self.verbose = verbose


@dataclass
class DevnetHandle:
    """A running devnet: its URL, the ledger (for `advance()` in tests), and `stop()`."""

    url: str
    devnet: SolanaDevnet
    _server: _Server
    _thread: threading.Thread

    def stop(self) -> None:
        self.devnet.stop_ticker()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_devnet(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    slot_ms: int = DEFAULT_SLOT_MS,
    finality_slots: int = DEFAULT_FINALITY_SLOTS,
    confirmed_slots: int = DEFAULT_CONFIRMED_SLOTS,
    verbose: bool = False,
) -> DevnetHandle:
    """Serve a fresh devnet on `host:port` (0 = a free port) in background threads."""
    devnet = SolanaDevnet(slot_ms=slot_ms, finality_slots=finality_slots, confirmed_slots=confirmed_slots)
    server = _Server((host, port), devnet, verbose=verbose)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="solana-devnet-http", daemon=True
    )
    thread.start()
    devnet.start_ticker()
    bound_host, bound_port = server.server_address[:2]
    return DevnetHandle(f"http://{bound_host}:{bound_port}", devnet, server, thread)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Solana JSON-RPC endpoint on LiteSVM")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--slot-ms", type=int, default=DEFAULT_SLOT_MS)
    parser.add_argument("--finality-slots", type=int, default=DEFAULT_FINALITY_SLOTS)
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)
    handle = start_devnet(
        args.port,
        host=args.host,
        slot_ms=args.slot_ms,
        finality_slots=args.finality_slots,
        verbose=args.verbose,
    )
    print(
        f"Solana devnet (LiteSVM) on {handle.url}: a slot every {args.slot_ms} ms, "
        f"finalized after {args.finality_slots} slots",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


if __name__ == "__main__":
    main()
