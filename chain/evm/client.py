"""The EVM RPC calls the watcher needs, over web3.py's HTTP provider. The same code talks to a
local anvil and to a real node; tests that need no chain give the watcher a fake with these three
methods instead (`EvmReader`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from chain.evm.events import DEPOSIT_TOPIC, DepositLog, decode_deposit_log
from chain.models import Chain


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


class EvmClient:
    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        from web3 import Web3

        self.url = url
        self.w3 = Web3(
            Web3.HTTPProvider(
                url,
                request_kwargs={"timeout": timeout or settings.CHAIN_RPC_TIMEOUT_SECONDS},
                # The watcher runs again in seconds; retrying inside one call only delays the others.
                exception_retry_configuration=None,
            )
        )

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

        logs = self._call(
            self.w3.eth.get_logs,
            {
                "address": Web3.to_checksum_address(receiver),
                "fromBlock": from_block,
                "toBlock": to_block,
                "topics": [DEPOSIT_TOPIC],
            },
        )
        decoded = (decode_deposit_log(log) for log in logs)
        return [log for log in decoded if log is not None]

    def tx_deposits(self, tx_hash: str, receiver: str) -> TxDeposits | None:
        from web3.exceptions import TransactionNotFound

        try:
            receipt = self._call(self.w3.eth.get_transaction_receipt, tx_hash)
        except TransactionNotFound:
            return None
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
            block_number=int(receipt["blockNumber"]),
            block_hash="0x" + bytes(block_hash).hex() if isinstance(block_hash, bytes) else str(block_hash).lower(),
            succeeded=receipt["status"] == 1,
            deposits=deposits,
        )


def rpc_url_for(chain: Chain) -> str:
    """The server's RPC URL: CHAIN_<KEY>_RPC_URL from the environment, else the row's public URL."""
    return settings.CHAIN_RPC_URLS.get(chain.key) or chain.rpc_url


def client_for(chain: Chain) -> EvmReader:
    url = rpc_url_for(chain)
    if not url:
        raise ChainUnavailable(f"No RPC URL for {chain.key}: set CHAIN_{chain.key.upper()}_RPC_URL.")
    return EvmClient(url)
