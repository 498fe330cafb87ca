from __future__ import annotations

from eth_account import Account
from web3 import Web3

from chain.evm import artifacts
from chain.evm.events import DEPOSIT_EVENT_ABI, DEPOSIT_TOPIC, decode_deposit_log
from chain.keys import ANVIL_TEST_KEYS


def test_the_deposit_event_fragment_is_the_contracts():
    [event] = [item for item in artifacts.abi("PaymentReceiver") if item.get("name") == "Deposit"]
    assert [(i["name"], i["type"], i["indexed"]) for i in event["inputs"]] == [
        (i["name"], i["type"], i["indexed"]) for i in DEPOSIT_EVENT_ABI["inputs"]
    ]
    assert DEPOSIT_TOPIC == "0x" + Web3.keccak(text="Deposit(bytes32,address,address,uint256)").hex().removeprefix("0x")


def test_decoding_a_log_and_refusing_others():
    log = {
        "topics": [DEPOSIT_TOPIC, "0x" + "ab" * 32, "0x" + "00" * 12 + "22" * 20],
        "data": "0x" + "00" * 32 + f"{10**18:064x}",
        "transactionHash": "0x" + "01" * 32,
        "blockHash": "0x" + "02" * 32,
        "blockNumber": 7,
        "logIndex": "0x3",
        "address": "0x" + "11" * 20,
    }
    decoded = decode_deposit_log(log)
    assert decoded.token == "" and decoded.amount == 10**18 and decoded.log_index == 3
    assert decoded.payer == "0x" + "22" * 20 and decoded.account_ref == "0x" + "ab" * 32
    assert decode_deposit_log({**log, "removed": True}) is None
    assert decode_deposit_log({**log, "topics": ["0x" + "00" * 32, *log["topics"][1:]]}) is None
    assert decode_deposit_log({**log, "data": "0x1234"}) is None


def test_the_refused_keys_are_anvils_accounts():
    Account.enable_unaudited_hdwallet_features()
    derived = {
        Account.from_mnemonic(
            "test test test test test test test test test test test junk", account_path=f"m/44'/60'/0'/0/{i}"
        )
        .key.hex()
        .removeprefix("0x")
        for i in range(10)
    }
    assert derived == ANVIL_TEST_KEYS
