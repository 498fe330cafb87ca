"""SponToken and TestUSDC on anvil."""

from __future__ import annotations

import pytest

from chain.evm import artifacts
from chain.evm.anvil import DEV_ACCOUNTS
from tests.contracts.helpers import ZERO_ADDRESS, assert_reverts, call, error_data, events, transaction_of

OWNER, TREASURY, HOLDER = DEV_ACCOUNTS[:3]


@pytest.fixture
def node(anvil):
    return anvil(chain_id=8453, deploy=True)


def test_spon_token_is_spheron_with_18_decimals_and_the_supply_at_the_treasury(node):
    spon = node.contract("SponToken")

    assert spon.functions.name().call() == "Spheron"
    assert spon.functions.symbol().call() == "SPON"
    assert spon.functions.decimals().call() == 18
    assert spon.functions.totalSupply().call() == artifacts.SPON_INITIAL_SUPPLY
    assert spon.functions.balanceOf(TREASURY.address).call() == artifacts.SPON_INITIAL_SUPPLY
    assert spon.functions.balanceOf(OWNER.address).call() == 0  # the deployer holds none


def test_spon_token_has_no_mint():
    names = {item.get("name") for item in artifacts.abi("SponToken") if item["type"] == "function"}
    assert not names & {"mint", "burn", "owner"}


def test_spon_token_refuses_a_zero_treasury(node):
    factory = node.w3.eth.contract(abi=artifacts.abi("SponToken"), bytecode=artifacts.load("SponToken")["bytecode"])
    transaction = factory.constructor(ZERO_ADDRESS, 1).build_transaction(
        {"gas": 2_000_000, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1, "nonce": 0, "chainId": 1}
    )
    assert_reverts(node.w3, OWNER, {"data": transaction["data"], "value": 0}, error_data("ZeroTreasury()"))


def test_spon_transfer_emits_transfer(node):
    spon = node.contract("SponToken")

    receipt = call(node.w3, TREASURY, spon.functions.transfer(HOLDER.address, 5 * 10**18))

    assert events(spon, "Transfer", receipt) == [{"from": TREASURY.address, "to": HOLDER.address, "value": 5 * 10**18}]
    assert spon.functions.balanceOf(HOLDER.address).call() == 5 * 10**18


def test_test_usdc_has_6_decimals_and_only_its_owner_mints(node):
    usdc = node.contract("TestUSDC")
    assert usdc.functions.decimals().call() == 6
    assert usdc.functions.symbol().call() == "USDC"
    assert usdc.functions.owner().call() == OWNER.address

    call(node.w3, OWNER, usdc.functions.mint(HOLDER.address, 12_345_678))
    assert usdc.functions.balanceOf(HOLDER.address).call() == 12_345_678

    assert_reverts(
        node.w3,
        HOLDER,
        transaction_of(usdc.functions.mint(HOLDER.address, 1)),
        error_data("OwnableUnauthorizedAccount(address)", ("address",), (HOLDER.address,)),
    )
    assert usdc.functions.totalSupply().call() == 12_345_678
