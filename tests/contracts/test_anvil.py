"""The devnet nodes themselves: real chain ids, replay protection, block time, fixed addresses."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from web3.exceptions import Web3RPCError

from chain.evm import artifacts
from chain.evm.anvil import DEV_ACCOUNTS, DEV_BALANCE_WEI
from chain.keys import is_test_key as is_dev_key
from tests.contracts.helpers import send

SENDER, RECIPIENT = DEV_ACCOUNTS[2:4]


def _transfer(w3, *, chain_id):
    nonce = w3.eth.get_transaction_count(SENDER.address)
    transaction = {
        "to": RECIPIENT.address,
        "value": 10**18,
        "gas": 21_000,
        "maxFeePerGas": 10 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "nonce": nonce,
        "chainId": chain_id,
    }
    return w3.eth.account.sign_transaction(transaction, SENDER.private_key).raw_transaction


@pytest.mark.parametrize("chain_id", [8453, 42161, 10, 56, 43114, 314, 324])
def test_node_answers_the_real_chain_id(anvil, chain_id):
    node = anvil(chain_id=chain_id)
    assert node.chain_id == chain_id
    assert node.w3.eth.chain_id == chain_id
    assert node.w3.eth.get_balance(DEV_ACCOUNTS[0].address) == DEV_BALANCE_WEI


def test_a_transaction_signed_for_another_chain_is_rejected(anvil):
    base = anvil(chain_id=8453)

    # Signed for Arbitrum One (42161): replayed on Base, the node refuses it.
    with pytest.raises(Web3RPCError):
        base.w3.eth.send_raw_transaction(_transfer(base.w3, chain_id=42161))
    assert base.w3.eth.get_balance(RECIPIENT.address) == DEV_BALANCE_WEI
    assert base.w3.eth.get_transaction_count(SENDER.address) == 0

    # The same transfer signed for Base goes through.
    tx_hash = base.w3.eth.send_raw_transaction(_transfer(base.w3, chain_id=8453))
    assert base.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    assert base.w3.eth.get_balance(RECIPIENT.address) == DEV_BALANCE_WEI + 10**18


def test_blocks_accrue_with_no_traffic_under_a_block_time(anvil):
    node = anvil(chain_id=10, block_time=0.2)
    first = node.w3.eth.block_number
    time.sleep(1)
    assert node.w3.eth.block_number >= first + 3


def test_automine_without_a_block_time(anvil):
    node = anvil(chain_id=10)
    assert node.w3.eth.block_number == 0
    send(node.w3, SENDER, {"to": RECIPIENT.address, "value": 1})
    assert node.w3.eth.block_number == 1


def test_contracts_land_at_the_same_addresses_on_every_chain(anvil):
    on_base = anvil(chain_id=8453, deploy=True)
    on_bnb = anvil(chain_id=56, block_time=0.5, deploy=True)

    assert on_base.contracts == on_bnb.contracts == artifacts.predicted_addresses(DEV_ACCOUNTS[0].address)
    for name, address in on_base.contracts.items():
        deployed = artifacts.load(name)["deployedBytecode"]
        # Immutables aside (none here), the code on chain is the committed runtime bytecode.
        assert on_base.w3.eth.get_code(address).to_0x_hex() == deployed
        assert on_bnb.w3.eth.get_code(address).to_0x_hex() == deployed


def test_deploy_all_again_returns_the_deployed_contracts_and_refuses_a_used_deployer(anvil):
    node = anvil(chain_id=8453, deploy=True)
    again = artifacts.deploy_all(node.w3, deployer_key=DEV_ACCOUNTS[0].private_key, treasury=DEV_ACCOUNTS[1].address)
    assert again == node.contracts

    send(node.w3, SENDER, {"to": RECIPIENT.address, "value": 1})  # nonce 1, no contracts
    with pytest.raises(artifacts.DeployError, match="fresh account"):
        artifacts.deploy_all(node.w3, deployer_key=SENDER.private_key, treasury=DEV_ACCOUNTS[1].address)


def test_dev_accounts_are_the_nodes_funded_accounts_and_their_keys(anvil):
    node = anvil(chain_id=8453)
    assert node.w3.eth.accounts == [account.address for account in DEV_ACCOUNTS]
    for account in DEV_ACCOUNTS:
        assert Account.from_key(account.private_key).address == account.address
        assert is_dev_key(account.private_key) and is_dev_key(account.private_key.upper().replace("0X", ""))
    assert not is_dev_key(Account.create().key.to_0x_hex())
