"""Sending transactions and checking reverts in the contract tests."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from chain.evm.anvil import DevAccount

REF = "0x" + "ab" * 32  # an account reference, as the product's deposit references look
OTHER_REF = "0x" + "cd" * 32
ZERO_REF = "0x" + "00" * 32
ZERO_ADDRESS = "0x" + "00" * 20
REVERT_GAS = 300_000  # sent with fixed gas: estimation would refuse a reverting transaction


def send(w3: Web3, account: DevAccount, transaction: dict[str, Any]):
    """Signs `transaction` (from `account`, on the node's chain id) and returns its receipt."""
    transaction = {
        "from": account.address,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        **transaction,
    }
    if "gas" not in transaction:
        transaction["gas"] = w3.eth.estimate_gas(transaction)
    if "maxFeePerGas" not in transaction and "gasPrice" not in transaction:
        base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
        transaction |= {"maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9}
    signed = w3.eth.account.sign_transaction(transaction, account.private_key)
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30)


def call(w3: Web3, account: DevAccount, function, *, value: int = 0):
    """Sends a contract function call from `account`; returns its receipt, which must succeed."""
    receipt = send(w3, account, transaction_of(function, value=value))
    assert receipt["status"] == 1
    return receipt


def error_data(signature: str, types: tuple[str, ...] = (), values: tuple = ()) -> str:
    """The revert data of custom error `signature` ("Name(type,...)") with these arguments."""
    return "0x" + (Web3.keccak(text=signature)[:4] + encode(list(types), list(values))).hex()


def assert_reverts(w3: Web3, account: DevAccount, transaction: dict[str, Any], expected_data: str) -> None:
    """The transaction reverts with `expected_data`, both as a call and once mined (status 0)."""
    call_transaction = {"from": account.address, **transaction}
    with pytest.raises(ContractCustomError) as raised:
        w3.eth.call(call_transaction)
    data = raised.value.data if isinstance(raised.value.data, str) else raised.value.data.get("data")
    assert data.lower() == expected_data.lower()
    receipt = send(w3, account, {**transaction, "gas": REVERT_GAS})
    assert receipt["status"] == 0


def transaction_of(function, *, value: int = 0) -> dict[str, Any]:
    """The `to`, `data` and `value` of a contract function call (no node asked: it may revert)."""
    placeholders = {"gas": REVERT_GAS, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1, "nonce": 0, "chainId": 1}
    built = function.build_transaction({"value": value, **placeholders})
    return {"to": built["to"], "data": built["data"], "value": value}


def events(contract, name: str, receipt) -> list[dict[str, Any]]:
    """The arguments of each `name` event `contract` emitted in the transaction (other logs ignored)."""
    return [dict(event["args"]) for event in getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)]
