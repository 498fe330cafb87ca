"""The PaymentReceiver's `Deposit` event, decoded by hand (two indexed words and two data words):
no ABI machinery per log, so a watcher ingests thousands of logs a second.

    event Deposit(bytes32 indexed accountRef, address indexed payer, address token, uint256 amount)

`token` is address(0) for the native token. contracts/build/PaymentReceiver.json holds the same
event; tests/chain/test_events.py checks that this fragment and the topic match it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DEPOSIT_EVENT_ABI: dict[str, Any] = {
    "type": "event",
    "name": "Deposit",
    "anonymous": False,
    "inputs": [
        {"name": "accountRef", "type": "bytes32", "indexed": True, "internalType": "bytes32"},
        {"name": "payer", "type": "address", "indexed": True, "internalType": "address"},
        {"name": "token", "type": "address", "indexed": False, "internalType": "address"},
        {"name": "amount", "type": "uint256", "indexed": False, "internalType": "uint256"},
    ],
}
# keccak256("Deposit(bytes32,address,address,uint256)")
DEPOSIT_TOPIC = "0xc95ddcaddf83340b68d0d44c01b1703f5d28d0611a3fd87e69d79ba7e2ac21d3"
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True)
class DepositLog:
    tx_hash: str  # 0x + 64 lowercase hex
    log_index: int
    block_number: int
    block_hash: str
    emitter: str  # lowercase
    account_ref: str  # 0x + 64 lowercase hex
    payer: str  # lowercase
    token: str  # lowercase; "" for the native token
    amount: int

    def as_raw(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["amount"] = str(self.amount)  # JSON numbers lose precision past 2**53
        return raw


def _hex(value: Any) -> str:
    """0x-prefixed lowercase hex of bytes/HexBytes/str."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def _word_address(word_hex: str) -> str:
    return "0x" + word_hex[-40:]


def decode_deposit_log(log: Any) -> DepositLog | None:
    """A `Deposit` log as the RPC returns it (web3's AttributeDict or plain JSON), or None when it
    is another event, malformed, or removed (eth_getLogs marks logs of a dropped block)."""
    try:
        if log.get("removed"):
            return None
        topics = [_hex(topic) for topic in log["topics"]]
        if len(topics) != 3 or topics[0] != DEPOSIT_TOPIC:
            return None
        data = _hex(log["data"])[2:]
        if len(data) != 128:
            return None
        token = _word_address(data[:64])
        block_number = log["blockNumber"]
        log_index = log["logIndex"]
        return DepositLog(
            tx_hash=_hex(log["transactionHash"]),
            log_index=int(log_index, 16) if isinstance(log_index, str) else int(log_index),
            block_number=int(block_number, 16) if isinstance(block_number, str) else int(block_number),
            block_hash=_hex(log["blockHash"]),
            emitter=_hex(log["address"]),
            account_ref=topics[1],
            payer=_word_address(topics[2]),
            token="" if token == ZERO_ADDRESS else token,
            amount=int(data[64:], 16),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
