"""The EVM transaction sender: record before send, the app's nonce, reconcile after.

A caller (slashing, commitments, payouts) records what it wants sent under its own idempotency key,
`(purpose, reference)`, in its own database transaction: `transaction_record`. The beat task then
sends it (`transaction_send`) and reads its receipt (`transactions_reconcile`). The rules:

- Nothing is sent that was not recorded first; the same (purpose, reference) is one row forever.
- The gas is estimated before a nonce is taken, so a call that would revert fails with its reason
  and leaves no gap in the nonces.
- The nonce comes from `SenderNonce` under a row lock (the chain's pending count only raises it,
  when someone else used the address). The signed transaction and its hash are stored before the
  broadcast: after a crash the next run looks the hash up or re-broadcasts the very same bytes; it
  never signs a second transaction for the same row with a new nonce.
- No receipt after CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS: re-signed with the same nonce and fees
  raised by CHAIN_SENDER_FEE_BUMP_PERCENT; every hash stays in `history`, and a receipt under any
  of them counts. After CHAIN_SENDER_MAX_ATTEMPTS broadcasts the row is "stuck" for an operator.
- A reverted transaction is "failed" with the decoded reason (Error(string), Panic(uint256) or a
  custom error of our contracts' ABIs), replayed with eth_call at its block when it was mined.

No RPC call is made inside `transaction.atomic()`; signing (local) is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chain.evm.artifacts import BUILD_DIR
from chain.evm.client import ChainUnavailable, rpc_url_for, web3_for
from chain.keys import key_from_env
from chain.models import Chain, ChainKind, ChainTransaction, SenderNonce, TxStatus

logger = logging.getLogger(__name__)

OPEN_STATUSES = (TxStatus.RECORDED, TxStatus.SENT, TxStatus.STUCK)
_ERROR_STRING = "0x08c379a0"  # Error(string)
_PANIC = "0x4e487b71"  # Panic(uint256)
_DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei, when the node has no eth_maxPriorityFeePerGas


class RpcError(Exception):
    """The node answered with a JSON-RPC error (as opposed to not answering: ChainUnavailable)."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.code = error.get("code")
        # Nodes quote raw revert data in the message (anvil: NUL bytes), which PostgreSQL text refuses.
        self.message = str(error.get("message") or "").replace("\x00", "")
        data = error.get("data")
        if isinstance(data, dict):  # some nodes nest it: {"data": {"data": "0x…"}}
            data = data.get("data")
        self.data = data if isinstance(data, str) and data.startswith("0x") else None
        super().__init__(f"{method}: {self.message}")

    @property
    def is_revert(self) -> bool:
        return self.code == 3 or "revert" in self.message.lower()


class Rpc:
    """The few JSON-RPC calls the sender makes, as raw requests (quantities stay hex strings)."""

    def __init__(self, url: str) -> None:
        self.w3 = web3_for(url)

    def call(self, method: str, params: list) -> Any:
        from web3.exceptions import Web3Exception

        try:
            answer = self.w3.provider.make_request(method, params)
        except (OSError, ValueError, Web3Exception) as exc:
            raise ChainUnavailable(f"{exc.__class__.__name__} from the RPC ({method})") from None
        error = answer.get("error")
        if error is not None:
            raise RpcError(method, error if isinstance(error, dict) else {"message": str(error)})
        return answer.get("result")

    def send_raw(self, raw_tx: str) -> str:
        return self.call("eth_sendRawTransaction", [raw_tx])


def rpc_for(chain: Chain) -> Rpc:
    if chain.kind != ChainKind.EVM:
        raise ImproperlyConfigured(f"{chain.key} is not an EVM chain: the sender signs EVM transactions only.")
    url = rpc_url_for(chain)
    if not url:
        raise ChainUnavailable(f"No RPC URL for {chain.key}: set CHAIN_{chain.key.upper()}_RPC_URL.")
    return Rpc(url)


def _key(name: str) -> str:
    key = key_from_env(name)
    if not key:
        raise ImproperlyConfigured(f"{name} is not set: the sender's key comes from the environment only.")
    return key


def _address_of(key: str) -> str:
    from eth_account import Account

    return Account.from_key(key).address


def _checksum(address: str) -> str:
    from web3 import Web3

    return Web3.to_checksum_address(address)


def _hex(value: int) -> str:
    return hex(int(value))


# --- revert reasons ---------------------------------------------------------------------------


@cache
def _custom_errors() -> dict[str, tuple[str, list[str]]]:
    """{selector: (name, argument types)} of every error in the compiled contracts' ABIs."""
    from eth_utils import keccak

    errors: dict[str, tuple[str, list[str]]] = {}
    for path in sorted(BUILD_DIR.glob("*.json")):
        try:
            abi = json.loads(path.read_text(encoding="utf-8")).get("abi", [])
        except (OSError, ValueError):
            continue
        for entry in abi:
            if entry.get("type") != "error":
                continue
            types = [argument["type"] for argument in entry.get("inputs", [])]
            signature = f"{entry['name']}({','.join(types)})"
            errors["0x" + keccak(text=signature)[:4].hex()] = (entry["name"], types)
    return errors


def revert_reason(data: str | None, message: str = "") -> str:
    """What the revert data says, for a person: the Error(string) text, Panic(code), a custom error
    with its arguments, or the unknown selector and data."""
    from eth_abi import decode

    if not data or data == "0x":
        return message or "reverted without a reason"
    selector, payload = data[:10].lower(), bytes.fromhex(data[10:])
    try:
        if selector == _ERROR_STRING:
            return decode(["string"], payload)[0]
        if selector == _PANIC:
            return f"Panic({hex(decode(['uint256'], payload)[0])})"
        known = _custom_errors().get(selector)
        if known is not None:
            name, types = known
            arguments = decode(types, payload) if types else ()
            shown = ", ".join(("0x" + value.hex()) if isinstance(value, bytes) else str(value) for value in arguments)
            return f"{name}({shown})"
    except Exception:  # undecodable arguments: say what came back
        pass
    return f"custom error {selector} ({data})"[:500]


# --- recording --------------------------------------------------------------------------------


def transaction_record(
    *,
    chain: Chain,
    purpose: str,
    reference: str,
    to: str,
    data: str = "0x",
    value: int = 0,
    sender_key_env: str,
    gas_limit: int | None = None,
) -> ChainTransaction:
    """The row for (purpose, reference): created now, or the one a previous try created (whatever
    the arguments this time). Nothing is sent here; call it inside the caller's own transaction.
    `gas_limit` given: no estimate (the transaction is sent even if it would revert)."""
    existing = ChainTransaction.objects.filter(purpose=purpose, reference=reference).first()
    if existing is not None:
        return existing
    sender = _address_of(_key(sender_key_env))  # refuses a missing key, or a test key outside DEBUG
    data = data if data.startswith("0x") else "0x" + data
    try:
        with transaction.atomic():
            return ChainTransaction.objects.create(
                chain=chain,
                purpose=purpose,
                reference=reference,
                key_env=sender_key_env,
                sender=sender,
                to=_checksum(to),
                value=value,
                data=data.lower(),
                gas_limit=gas_limit,
            )
    except IntegrityError:  # a concurrent try recorded it first
        return ChainTransaction.objects.get(purpose=purpose, reference=reference)


# --- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


def _market_fees(rpc: Rpc) -> Fees:
    block = rpc.call("eth_getBlockByNumber", ["latest", False]) or {}
    base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
    try:
        priority = int(rpc.call("eth_maxPriorityFeePerGas", []), 16)
    except RpcError:
        priority = _DEFAULT_PRIORITY_FEE
    return Fees(max_fee_per_gas=2 * base_fee + priority, max_priority_fee_per_gas=priority)


def _bumped(old: int, percent: int) -> int:
    return (old * (100 + percent) + 99) // 100


def _sign(tx: ChainTransaction, key: str, fees: Fees) -> None:
    """Signs `tx` (nonce and gas limit set) with `fees`; stores hash, raw bytes and a history entry
    on the instance (the caller saves it before broadcasting)."""
    from eth_account import Account

    if _address_of(key) != tx.sender:
        raise ImproperlyConfigured(f"{tx.key_env} no longer holds the key of {tx.sender}.")
    signed = Account.sign_transaction(
        {
            "type": 2,
            "chainId": tx.chain.chain_id,
            "nonce": tx.nonce,
            "to": tx.to,
            "value": int(tx.value),
            "data": tx.data,
            "gas": tx.gas_limit,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        },
        key,
    )
    tx.tx_hash = "0x" + bytes(signed.hash).hex()
    tx.raw_tx = "0x" + bytes(signed.raw_transaction).hex()
    tx.max_fee_per_gas = fees.max_fee_per_gas
    tx.max_priority_fee_per_gas = fees.max_priority_fee_per_gas
    tx.history = [
        *tx.history,
        {
            "hash": tx.tx_hash,
            "max_fee": str(fees.max_fee_per_gas),
            "priority_fee": str(fees.max_priority_fee_per_gas),
            "at": timezone.now().isoformat(),
        },
    ]
    tx.attempts = len(tx.history)


def _text(value: str) -> str:
    """For a text column: no NUL bytes (PostgreSQL refuses them), at most 500 characters."""
    return value.replace("\x00", "")[:500]


def _fail(tx: ChainTransaction, *, reason: str, **fields: Any) -> None:
    if isinstance(fields.get("error"), str):
        fields["error"] = _text(fields["error"])
    ChainTransaction.objects.filter(pk=tx.pk, status__in=OPEN_STATUSES).update(
        status=TxStatus.FAILED, revert_reason=_text(reason), updated_at=timezone.now(), **fields
    )
    tx.refresh_from_db()


def _note_error(tx: ChainTransaction, error: str) -> None:
    ChainTransaction.objects.filter(pk=tx.pk).update(error=_text(error), updated_at=timezone.now())
    tx.error = _text(error)


def _broadcast(tx: ChainTransaction, rpc: Rpc) -> None:
    """Broadcasts the stored raw transaction. "Already known" and "nonce too low" mean it (or a
    version of it) is out there already: sent, and the reconciler reads which one was mined."""
    try:
        rpc.send_raw(tx.raw_tx)
    except RpcError as exc:
        message = exc.message.lower()
        if not ("already known" in message or "known transaction" in message or "nonce too low" in message):
            _note_error(tx, f"broadcast: {exc.message}")
            logger.warning("chain tx %s (%s %s): %s", tx.pk, tx.purpose, tx.reference, exc)
            return
    now = timezone.now()
    ChainTransaction.objects.filter(pk=tx.pk, tx_hash=tx.tx_hash, status__in=OPEN_STATUSES).update(
        status=TxStatus.SENT, sent_at=now, error="", updated_at=now
    )
    tx.refresh_from_db()


def _known(rpc: Rpc, tx: ChainTransaction) -> bool:
    """Whether the node has any signed version of `tx` (pending or mined)."""
    return any(rpc.call("eth_getTransactionByHash", [entry["hash"]]) is not None for entry in tx.history)


def transaction_send(*, tx_id: int) -> ChainTransaction:
    """Sends a recorded transaction once; any other status is returned as it is.

    Signed before (a crash between signing and the end of the broadcast): the node is asked for its
    hashes, and the same bytes are broadcast again only if it has none of them."""
    tx = ChainTransaction.objects.select_related("chain").get(pk=tx_id)
    if tx.status != TxStatus.RECORDED:
        return tx
    rpc = rpc_for(tx.chain)
    key = _key(tx.key_env)
    if tx.tx_hash:
        if _known(rpc, tx):
            now = timezone.now()
            ChainTransaction.objects.filter(pk=tx.pk, status=TxStatus.RECORDED).update(
                status=TxStatus.SENT, sent_at=now, error="", updated_at=now
            )
            tx.refresh_from_db()
        else:
            _broadcast(tx, rpc)
        return tx

    gas_limit = tx.gas_limit
    if gas_limit is None:
        call = {"from": tx.sender, "to": tx.to, "value": _hex(tx.value), "data": tx.data}
        try:
            estimate = int(rpc.call("eth_estimateGas", [call]), 16)
        except RpcError as exc:
            if exc.is_revert:
                _fail(tx, reason=revert_reason(exc.data, exc.message), error=f"estimate: {exc.message}"[:500])
                return tx
            _note_error(tx, f"estimate: {exc.message}")
            return tx
        gas_limit = _bumped(estimate, settings.CHAIN_SENDER_GAS_MARGIN_PERCENT)
    pending = int(rpc.call("eth_getTransactionCount", [tx.sender, "pending"]), 16)
    fees = _market_fees(rpc)

    with transaction.atomic():
        tx = ChainTransaction.objects.select_for_update().select_related("chain").get(pk=tx_id)
        if tx.status != TxStatus.RECORDED or tx.tx_hash:
            return tx  # another worker got here first
        if tx.nonce is None:
            SenderNonce.objects.get_or_create(chain=tx.chain, address=tx.sender)
            counter = SenderNonce.objects.select_for_update().get(chain=tx.chain, address=tx.sender)
            tx.nonce = max(counter.next_nonce, pending)
            counter.next_nonce = tx.nonce + 1
            counter.save(update_fields=["next_nonce", "updated_at"])
        tx.gas_limit = gas_limit
        _sign(tx, key, fees)
        tx.save()
    _broadcast(tx, rpc)
    return tx


def transaction_resend(*, tx_id: int) -> ChainTransaction:
    """Now, whatever the timers say: a recorded transaction is sent, a sent or stuck one is
    re-signed with the same nonce and higher fees (the admin's "re-send now")."""
    tx = ChainTransaction.objects.select_related("chain").get(pk=tx_id)
    if tx.status == TxStatus.RECORDED and not tx.tx_hash:
        return transaction_send(tx_id=tx.pk)
    if tx.status in OPEN_STATUSES:
        _resend(tx, rpc_for(tx.chain))
        tx.refresh_from_db()
    return tx


def _resend(tx: ChainTransaction, rpc: Rpc) -> None:
    key = _key(tx.key_env)
    market = _market_fees(rpc)
    percent = settings.CHAIN_SENDER_FEE_BUMP_PERCENT
    priority = max(_bumped(int(tx.max_priority_fee_per_gas or 0), percent), market.max_priority_fee_per_gas)
    max_fee = max(_bumped(int(tx.max_fee_per_gas or 0), percent), market.max_fee_per_gas, priority)
    with transaction.atomic():
        locked = ChainTransaction.objects.select_for_update().select_related("chain").get(pk=tx.pk)
        if locked.tx_hash != tx.tx_hash or locked.status not in OPEN_STATUSES:
            return  # another run re-sent or settled it meanwhile
        _sign(locked, key, Fees(max_fee_per_gas=max_fee, max_priority_fee_per_gas=priority))
        locked.save()
    _broadcast(locked, rpc)


# --- reconciling ------------------------------------------------------------------------------


def _receipt(rpc: Rpc, tx: ChainTransaction) -> dict[str, Any] | None:
    """The receipt of whichever signed version was mined (newest first), or None."""
    for entry in reversed(tx.history):
        receipt = rpc.call("eth_getTransactionReceipt", [entry["hash"]])
        if receipt:
            return receipt
    return None


def _mined_revert_reason(rpc: Rpc, tx: ChainTransaction, block: int, gas_used: int) -> str:
    call = {"from": tx.sender, "to": tx.to, "value": _hex(tx.value), "data": tx.data, "gas": _hex(tx.gas_limit or 0)}
    try:
        rpc.call("eth_call", [call, _hex(block)])
    except RpcError as exc:
        return revert_reason(exc.data, exc.message)
    if tx.gas_limit and gas_used >= tx.gas_limit:
        return "out of gas"
    return "reverted when mined; the replay at its block did not revert"


def _settle(tx: ChainTransaction, rpc: Rpc, receipt: dict[str, Any]) -> None:
    block = int(receipt["blockNumber"], 16)
    gas_used = int(receipt["gasUsed"], 16)
    mined = {
        "tx_hash": str(receipt["transactionHash"]).lower(),
        "receipt_block": block,
        "receipt_status": int(receipt["status"], 16),
        "gas_used": gas_used,
        "mined_at": timezone.now(),
        "error": "",
    }
    if mined["receipt_status"] == 1:
        ChainTransaction.objects.filter(pk=tx.pk, status__in=OPEN_STATUSES).update(
            status=TxStatus.MINED, updated_at=timezone.now(), **mined
        )
        tx.refresh_from_db()
    else:
        _fail(tx, reason=_mined_revert_reason(rpc, tx, block, gas_used), **mined)


def _last_signed(tx: ChainTransaction):
    at = parse_datetime(tx.history[-1]["at"]) if tx.history else None
    return at or tx.sent_at or tx.updated_at


@dataclass
class ReconcileResult:
    mined: int = 0
    failed: int = 0
    resent: int = 0
    stuck: int = 0
    replaced: int = 0


def transactions_reconcile(*, chain: Chain) -> ReconcileResult:
    """Reads the receipts of the chain's sent (and stuck) transactions: mined, failed with the
    reason, replaced (the nonce went to a transaction that is not ours), re-sent with higher fees
    when the receipt is overdue, or stuck after too many broadcasts."""
    rpc = rpc_for(chain)
    result = ReconcileResult()
    now = timezone.now()
    timeout = settings.CHAIN_SENDER_RECEIPT_TIMEOUT_SECONDS
    mined_counts: dict[str, int] = {}
    # Recorded ones that were signed count too: the broadcast may have been refused (fees below the
    # base fee, funds) and only a re-signed version will do.
    open_txs = ChainTransaction.objects.filter(chain=chain, status__in=OPEN_STATUSES).exclude(tx_hash="")
    for tx in open_txs.select_related("chain").order_by("sender", "nonce"):
        # The count first: a receipt that appears after it is read below; one that appeared before
        # it is counted and then read too. Either way a mined transaction of ours is never "replaced".
        if tx.sender not in mined_counts:
            mined_counts[tx.sender] = int(rpc.call("eth_getTransactionCount", [tx.sender, "latest"]), 16)
        receipt = _receipt(rpc, tx)
        if receipt is not None:
            _settle(tx, rpc, receipt)
            if tx.status == TxStatus.MINED:
                result.mined += 1
            else:
                result.failed += 1
            continue
        if tx.nonce is not None and mined_counts[tx.sender] > tx.nonce:
            ChainTransaction.objects.filter(pk=tx.pk, status__in=OPEN_STATUSES).update(
                status=TxStatus.REPLACED,
                error=f"nonce {tx.nonce} was used by a transaction not in this row's history",
                updated_at=now,
            )
            result.replaced += 1
            continue
        if tx.status == TxStatus.STUCK:
            continue  # an operator's "re-send now"
        if (now - _last_signed(tx)).total_seconds() < timeout:
            continue
        if tx.attempts >= settings.CHAIN_SENDER_MAX_ATTEMPTS:
            ChainTransaction.objects.filter(pk=tx.pk, status__in=(TxStatus.RECORDED, TxStatus.SENT)).update(
                status=TxStatus.STUCK, updated_at=now
            )
            logger.warning("chain tx %s (%s) stuck after %s broadcasts", tx.pk, tx.reference, tx.attempts)
            result.stuck += 1
            continue
        _resend(tx, rpc)
        result.resent += 1
    return result


def transactions_run() -> dict[str, str]:
    """One pass of the beat task over every chain with open transactions: reconcile what was sent,
    then send what was recorded (in the order recorded, so the nonces follow it). A chain that
    cannot be reached, or whose key is missing, is logged and left to the next pass."""
    outcome: dict[str, str] = {}
    chain_ids = ChainTransaction.objects.filter(status__in=OPEN_STATUSES).values_list("chain_id", flat=True)
    for chain in Chain.objects.filter(id__in=chain_ids).order_by("id"):
        try:
            reconciled = transactions_reconcile(chain=chain)
            recorded = ChainTransaction.objects.filter(chain=chain, status=TxStatus.RECORDED).order_by("id")
            sent = 0
            for tx_id in recorded.values_list("id", flat=True):
                sent += transaction_send(tx_id=tx_id).status == TxStatus.SENT
        except (ChainUnavailable, RpcError, ImproperlyConfigured) as exc:
            logger.warning("chain %s: sender: %s", chain.key, exc)
            outcome[chain.key] = f"error: {exc}"
            continue
        outcome[chain.key] = f"sent {sent}, mined {reconciled.mined}, failed {reconciled.failed}, " + (
            f"re-sent {reconciled.resent}, stuck {reconciled.stuck}, replaced {reconciled.replaced}"
        )
    return outcome
