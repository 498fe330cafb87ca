"""deploy_all with SponStaking and LeaseRegistry: the first three contracts keep their addresses,
the operator gets the slasher and recorder roles, and a devnet state saved before SponStaking
existed gets the two new contracts at their predicted addresses."""

from __future__ import annotations

import pytest
from web3 import Web3

from chain.evm import artifacts
from chain.evm.anvil import DEV_ACCOUNTS
from tests.contracts.helpers import call, send

DEPLOYER, TREASURY, OPERATOR = DEV_ACCOUNTS[0], DEV_ACCOUNTS[1], DEV_ACCOUNTS[6]
SLASHER_ROLE = Web3.keccak(text="SLASHER_ROLE")
RECORDER_ROLE = Web3.keccak(text="RECORDER_ROLE")

# Where the contracts were before SponStaking and LeaseRegistry came: devnet states, registry rows
# and wallets' saved tokens point here, so these must not move.
FIRST_ADDRESSES = {
    "SponToken": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "TestUSDC": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "PaymentReceiver": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
}


def test_the_first_three_contracts_keep_their_addresses():
    predicted = artifacts.predicted_addresses(DEPLOYER.address)
    assert {name: predicted[name] for name in FIRST_ADDRESSES} == FIRST_ADDRESSES
    assert set(predicted) == {*FIRST_ADDRESSES, "SponStaking", "LeaseRegistry"}
    assert len(set(predicted.values())) == len(predicted)


def test_deploy_all_deploys_staking_and_registry_with_their_roles(anvil):
    node = anvil(chain_id=8453, deploy=True)

    assert node.contracts == artifacts.predicted_addresses(DEPLOYER.address)
    assert node.w3.eth.get_transaction_count(DEPLOYER.address) == artifacts.DEPLOY_TRANSACTIONS
    staking = node.contract("SponStaking")
    assert staking.functions.spon().call() == node.contracts["SponToken"]
    assert staking.functions.cooldownSeconds().call() == artifacts.DEVNET_UNSTAKE_COOLDOWN_SECONDS
    assert staking.functions.hasRole(SLASHER_ROLE, DEPLOYER.address).call() is True
    assert node.contract("LeaseRegistry").functions.hasRole(RECORDER_ROLE, DEPLOYER.address).call() is True


def test_deploy_all_grants_the_roles_to_the_operator_with_the_cooldown_asked(anvil):
    node = anvil(chain_id=8453)

    contracts = artifacts.deploy_all(
        node.w3,
        deployer_key=DEPLOYER.private_key,
        treasury=TREASURY.address,
        unstake_cooldown_seconds=14 * 24 * 3600,
        operator=OPERATOR.address,
    )

    staking = artifacts.contract(node.w3, "SponStaking", contracts["SponStaking"])
    registry = artifacts.contract(node.w3, "LeaseRegistry", contracts["LeaseRegistry"])
    assert staking.functions.cooldownSeconds().call() == 14 * 24 * 3600
    assert staking.functions.hasRole(SLASHER_ROLE, OPERATOR.address).call() is True
    assert staking.functions.hasRole(SLASHER_ROLE, DEPLOYER.address).call() is False
    assert registry.functions.hasRole(RECORDER_ROLE, OPERATOR.address).call() is True
    assert registry.functions.hasRole(RECORDER_ROLE, DEPLOYER.address).call() is False
    # The deployer stays the admin, who can grant the roles again.
    assert staking.functions.hasRole(staking.functions.DEFAULT_ADMIN_ROLE().call(), DEPLOYER.address).call() is True


def _deploy_the_first_three_as_before(w3):
    """What deploy_all did before SponStaking: the three contracts, then both tokens allowed."""
    args = {
        "SponToken": (TREASURY.address, artifacts.SPON_INITIAL_SUPPLY),
        "TestUSDC": (DEPLOYER.address,),
        "PaymentReceiver": (DEPLOYER.address, TREASURY.address),
    }
    for name in FIRST_ADDRESSES:
        artifact = artifacts.load(name)
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = send(w3, DEPLOYER, {"data": factory.constructor(*args[name]).data_in_transaction})
        assert receipt["contractAddress"] == FIRST_ADDRESSES[name]
    receiver = artifacts.contract(w3, "PaymentReceiver", FIRST_ADDRESSES["PaymentReceiver"])
    for token in ("SponToken", "TestUSDC"):
        call(w3, DEPLOYER, receiver.functions.setTokenAllowed(FIRST_ADDRESSES[token], True))


def test_a_state_saved_before_staking_gets_the_new_contracts(anvil):
    node = anvil(chain_id=8453)
    _deploy_the_first_three_as_before(node.w3)

    contracts = artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address)

    assert contracts == artifacts.predicted_addresses(DEPLOYER.address)
    for address in contracts.values():
        assert node.w3.eth.get_code(address)
    staking = artifacts.contract(node.w3, "SponStaking", contracts["SponStaking"])
    assert staking.functions.spon().call() == FIRST_ADDRESSES["SponToken"]
    assert staking.functions.hasRole(SLASHER_ROLE, DEPLOYER.address).call() is True
    # And a third call finds everything in place.
    assert artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address) == contracts


def test_a_deployer_that_stopped_midway_is_refused(anvil):
    node = anvil(chain_id=8453)
    artifact = artifacts.load("SponToken")
    factory = node.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    send(node.w3, DEPLOYER, {"data": factory.constructor(TREASURY.address, 1).data_in_transaction})

    with pytest.raises(artifacts.DeployError, match="fresh account"):
        artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address)
