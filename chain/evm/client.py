"""The EVM RPC calls the watcher needs, over web3.py's HTTP provider. The same code talks to a
local anvil and to a real node; tests that need no chain give the watcher a fake with these three
methods instead (`EvmReader`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from chain.evm.events import DEPOSIT_TOPIC, DepositLog, decode_deposit_log
from chain.models import Chain

RECEIPT_BATCH = 100  # receipts per JSON-RPC batch request (public RPCs cap batches at 100 or more)


class ChainUnavailable(Exception):
    """The RPC could not be reached or answered with an error: try again later."""


@dataclass(frozen=True)
class TxDeposits:
    """A mined transaction as its receipt tells it: where it is and the receiver's deposits in it."""

    tx_hash: str
    block_number: int
    block_hash: str
    succeeded: bool
    deposits: list[DepositLog]


class EvmReader(Protocol):
    def head(self) -> int: ...

    def deposit_logs(self, receiver: str, from_block: int, to_block: int) -> list[DepositLog]: ...

    def tx_deposits(self, tx_hash: str, receiver: str) -> TxDeposits | None: ...


def web3_for(url: str, *, timeout: float | None = None):
    """A web3 client of one RPC URL, as every part of the app uses it: CHAIN_RPC_TIMEOUT_SECONDS per
    request and no retries inside a call (the watchers, the sender and the indexer run again in
    seconds; retrying inside one call only delays the others)."""
    from web3 import Web3

    return Web3(
        Web3.HTTPProvider(
            url,
            request_kwargs={"timeout": timeout or settings.CHAIN_RPC_TIMEOUT_SECONDS},
            exception_retry_configuration=None,
        )
    )


class EvmClient:
    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        self.url = url
        self.w3 = web3_for(url, timeout=timeout)

    def _call(self, method, *args):
        from web3.exceptions import TransactionNotFound, Web3Exception

        try:
            return method(*args)
        except TransactionNotFound:
            raise
        except (OSError, Web3Exception, ValueError) as exc:  # connection errors are OSError (requests)
            raise ChainUnavailable(f"{exc.__class__.__name__} from the RPC") from None

    def head(self) -> int:
        return int(self._call(lambda: self.w3.eth.block_number))

    def deposit_logs(self, receiver: str, from_block: int, to_block: int) -> list[DepositLog]:
        from web3 import Web3

        # The raw JSON-RPC answer: web3's result formatters (AttributeDict, HexBytes per field) cost
        # more than decoding, and decode_deposit_log reads plain JSON.
        answer = self._call(
            self.w3.provider.make_request,
            "eth_getLogs",
            [
                {
                    "address": Web3.to_checksum_address(receiver),
                    "fromBlock": hex(from_block),
                    "toBlock": hex(to_block),
                    "topics": [DEPOSIT_TOPIC],
                }
            ],
        )
        if answer.get("error") is not None or not isinstance(answer.get("result"), list):
            raise ChainUnavailable("error from the RPC for eth_getLogs")
        decoded = (decode_deposit_log(log) for log in answer["result"])
        return [log for log in decoded if log is not None]

    def tx_deposits(self, tx_hash: str, receiver: str) -> TxDeposits | None:
        from web3.exceptions import TransactionNotFound

        try:
            receipt = self._call(self.w3.eth.get_transaction_receipt, tx_hash)
        except TransactionNotFound:
            return None
        return _tx_from_receipt(tx_hash, receipt, receiver)

    def tx_deposits_many(self, tx_hashes: Sequence[str], receiver: str) -> dict[str, TxDeposits | None]:
        """`tx_deposits` of many transactions, RECEIPT_BATCH receipts per HTTP request (a JSON-RPC
        batch): the watcher re-reads hundreds of deposits at finality. {tx hash as given: ...}."""
        found: dict[str, TxDeposits | None] = {}
        hashes = list(dict.fromkeys(tx_hashes))
        for start in range(0, len(hashes), RECEIPT_BATCH):
            chunk = hashes[start : start + RECEIPT_BATCH]
            answers = self._call(
                self.w3.provider.make_batch_request, [("eth_getTransactionReceipt", [tx_hash]) for tx_hash in chunk]
            )
            # A whole batch refused comes back as one error object, not a list.
            if not isinstance(answers, list) or len(answers) != len(chunk):
                raise ChainUnavailable("the RPC refused a batch of receipt requests")
            for tx_hash, answer in zip(chunk, answers, strict=True):
                if answer.get("error") is not None:
                    raise ChainUnavailable("error from the RPC for a receipt")
                found[tx_hash] = _tx_from_receipt(tx_hash, answer.get("result"), receiver)
        return found


def _quantity(value) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _tx_from_receipt(tx_hash: str, receipt, receiver: str) -> TxDeposits | None:
    """A receipt (web3's AttributeDict or the RPC's plain JSON; None: not mined) as a TxDeposits."""
    if receipt is None:
        return None
    receiver = receiver.lower()
    deposits = [
        log
        for log in (decode_deposit_log(raw) for raw in receipt["logs"])
        if log is not None and log.emitter == receiver
    ]
    block_hash = receipt["blockHash"]
    return TxDeposits(
        tx_hash=tx_hash.lower(),
        block_number=_quantity(receipt["blockNumber"]),
        block_hash="0x" + bytes(block_hash).hex() if isinstance(block_hash, bytes) else str(block_hash).lower(),
        succeeded=_quantity(receipt["status"]) == 1,
        deposits=deposits,
    )


def tx_deposits_many(client: EvmReader, tx_hashes: Sequence[str], receiver: str) -> dict[str, TxDeposits | None]:
    """The client's batched read when it has one (EvmClient), else one `tx_deposits` per hash."""
    batched = getattr(client, "tx_deposits_many", None)
    if batched is not None:
        return batched(tx_hashes, receiver)
    return {tx_hash: client.tx_deposits(tx_hash, receiver) for tx_hash in dict.fromkeys(tx_hashes)}


def rpc_url_for(chain: Chain) -> str:
    """The server's RPC URL: CHAIN_<KEY>_RPC_URL from the environment, else the row's public URL."""
    return settings.CHAIN_RPC_URLS.get(chain.key) or chain.rpc_url


def client_for(chain: Chain) -> EvmReader:
    url = rpc_url_for(chain)
    if not url:
        raise ChainUnavailable(f"No RPC URL for {chain.key}: set CHAIN_{chain.key.upper()}_RPC_URL.")
    return EvmClient(url)
