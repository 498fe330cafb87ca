"""deploy_all with SponStaking, LeaseRegistry and RewardDistributor: the earlier contracts keep their
addresses, the operator gets the slasher, recorder and root-setter roles, a devnet state saved
before SponStaking existed gets the new contracts at their predicted addresses, and one saved
before RewardDistributor existed gets it whatever its deployer sent since (CREATE2)."""

from __future__ import annotations

import pytest
from eth_abi import encode
from web3 import Web3

from chain.evm import artifacts
from chain.evm.anvil import DEV_ACCOUNTS
from tests.contracts.helpers import call, send

DEPLOYER, TREASURY, OPERATOR = DEV_ACCOUNTS[0], DEV_ACCOUNTS[1], DEV_ACCOUNTS[6]
DEMO_PAYER = DEV_ACCOUNTS[2]
SLASHER_ROLE = Web3.keccak(text="SLASHER_ROLE")
RECORDER_ROLE = Web3.keccak(text="RECORDER_ROLE")
ROOT_SETTER_ROLE = Web3.keccak(text="ROOT_SETTER_ROLE")

# Where the contracts were before SponStaking and LeaseRegistry came: devnet states, registry rows
# and wallets' saved tokens point here, so these must not move.
FIRST_ADDRESSES = {
    "SponToken": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "TestUSDC": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "PaymentReceiver": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
}


# And where SponStaking and LeaseRegistry were before RewardDistributor came.
NONCE_ADDRESSES = {
    **FIRST_ADDRESSES,
    "SponStaking": "0x5FC8d32690cc91D4c39d9d3abcBD16989F875707",
    "LeaseRegistry": "0x0165878A594ca255338adfa4d48449f69242Eb8F",
}
CREATE2_PROXY = "0x4e59b44847b379578588920cA78FbF26c0B4956C"  # Arachnid's, in anvil's genesis


def _distributor_create2_address() -> str:
    """CREATE2's rule, written out: keccak256(0xff ++ proxy ++ salt ++ keccak256(init code))[12:],
    the init code being the build's bytecode and the ABI-encoded (SponToken, admin)."""
    init_code = bytes.fromhex(artifacts.load("RewardDistributor")["bytecode"][2:]) + encode(
        ["address", "address"], [FIRST_ADDRESSES["SponToken"], DEPLOYER.address]
    )
    salt = Web3.keccak(text="spheron:RewardDistributor")
    digest = Web3.keccak(b"\xff" + bytes.fromhex(CREATE2_PROXY[2:]) + salt + Web3.keccak(init_code))
    return Web3.to_checksum_address(digest[12:])


def test_the_earlier_contracts_keep_their_addresses():
    predicted = artifacts.predicted_addresses(DEPLOYER.address)
    assert {name: predicted[name] for name in NONCE_ADDRESSES} == NONCE_ADDRESSES
    assert set(predicted) == {*NONCE_ADDRESSES, "RewardDistributor"} == set(artifacts.CONTRACTS)
    assert len(set(predicted.values())) == len(predicted)


def test_the_distributor_address_is_create2_of_its_build_and_deployer():
    assert artifacts.CREATE2_FACTORY == CREATE2_PROXY
    assert artifacts.predicted_addresses(DEPLOYER.address)["RewardDistributor"] == _distributor_create2_address()
    # Another deployer: another SponToken and admin, so another distributor.
    other = artifacts.predicted_addresses(OPERATOR.address)["RewardDistributor"]
    assert other != _distributor_create2_address()


def test_deploy_all_deploys_staking_and_registry_with_their_roles(anvil):
    node = anvil(chain_id=8453, deploy=True)

    assert node.contracts == artifacts.predicted_addresses(DEPLOYER.address)
    assert node.w3.eth.get_transaction_count(DEPLOYER.address) == artifacts.DEPLOY_TRANSACTIONS
    staking = node.contract("SponStaking")
    assert staking.functions.spon().call() == node.contracts["SponToken"]
    assert staking.functions.cooldownSeconds().call() == artifacts.DEVNET_UNSTAKE_COOLDOWN_SECONDS
    assert staking.functions.hasRole(SLASHER_ROLE, DEPLOYER.address).call() is True
    assert node.contract("LeaseRegistry").functions.hasRole(RECORDER_ROLE, DEPLOYER.address).call() is True
    distributor = node.contract("RewardDistributor")
    assert node.contracts["RewardDistributor"] == _distributor_create2_address()
    assert distributor.functions.spon().call() == node.contracts["SponToken"]
    assert distributor.functions.hasRole(ROOT_SETTER_ROLE, DEPLOYER.address).call() is True
    assert distributor.functions.hasRole(distributor.functions.DEFAULT_ADMIN_ROLE().call(), DEPLOYER.address).call()
    # The committed build is what runs there (no immutables patched into the runtime code).
    deployed = artifacts.load("RewardDistributor")["deployedBytecode"]
    assert "0x" + node.w3.eth.get_code(node.contracts["RewardDistributor"]).hex() == deployed


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
    distributor = artifacts.contract(node.w3, "RewardDistributor", contracts["RewardDistributor"])
    assert distributor.functions.hasRole(ROOT_SETTER_ROLE, OPERATOR.address).call() is True
    assert distributor.functions.hasRole(ROOT_SETTER_ROLE, DEPLOYER.address).call() is False
    # The deployer stays the admin, who can grant the roles again.
    assert staking.functions.hasRole(staking.functions.DEFAULT_ADMIN_ROLE().call(), DEPLOYER.address).call() is True
    assert distributor.functions.hasRole(distributor.functions.DEFAULT_ADMIN_ROLE().call(), DEPLOYER.address).call()


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
    distributor = artifacts.contract(node.w3, "RewardDistributor", contracts["RewardDistributor"])
    assert distributor.functions.hasRole(ROOT_SETTER_ROLE, DEPLOYER.address).call() is True
    assert node.w3.eth.get_transaction_count(DEPLOYER.address) == artifacts.DEPLOY_TRANSACTIONS
    # And a third call finds everything in place.
    assert artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address) == contracts


def _deploy_the_first_five_as_before(w3):
    """What deploy_all did before RewardDistributor: the nine transactions (nonces 0-8)."""
    _deploy_the_first_three_as_before(w3)
    args = {
        "SponStaking": (FIRST_ADDRESSES["SponToken"], TREASURY.address, 300, DEPLOYER.address),
        "LeaseRegistry": (DEPLOYER.address,),
    }
    for name in ("SponStaking", "LeaseRegistry"):
        artifact = artifacts.load(name)
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = send(w3, DEPLOYER, {"data": factory.constructor(*args[name]).data_in_transaction})
        assert receipt["contractAddress"] == NONCE_ADDRESSES[name]
    staking = artifacts.contract(w3, "SponStaking", NONCE_ADDRESSES["SponStaking"])
    registry = artifacts.contract(w3, "LeaseRegistry", NONCE_ADDRESSES["LeaseRegistry"])
    call(w3, DEPLOYER, staking.functions.grantRole(SLASHER_ROLE, DEPLOYER.address))
    call(w3, DEPLOYER, registry.functions.grantRole(RECORDER_ROLE, DEPLOYER.address))
    assert w3.eth.get_transaction_count(DEPLOYER.address) == 9


@pytest.mark.parametrize("later_transactions", [0, 3])
def test_a_state_saved_before_the_distributor_gets_it_whatever_the_deployer_sent_since(anvil, later_transactions):
    """On a devnet the deployer went on sending (the demo payer's USDC at nonce 9, then commitments,
    slashes and payouts as the operator): no nonce was left for a CREATE at a fixed nonce."""
    node = anvil(chain_id=8453)
    _deploy_the_first_five_as_before(node.w3)
    usdc = artifacts.contract(node.w3, "TestUSDC", FIRST_ADDRESSES["TestUSDC"])
    for _ in range(later_transactions):
        call(node.w3, DEPLOYER, usdc.functions.mint(DEMO_PAYER.address, 10**6))
    nonce_before = 9 + later_transactions

    contracts = artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address)

    assert contracts == artifacts.predicted_addresses(DEPLOYER.address)
    assert contracts["RewardDistributor"] == _distributor_create2_address()
    assert {name: contracts[name] for name in NONCE_ADDRESSES} == NONCE_ADDRESSES
    distributor = artifacts.contract(node.w3, "RewardDistributor", contracts["RewardDistributor"])
    assert distributor.functions.spon().call() == FIRST_ADDRESSES["SponToken"]
    assert distributor.functions.hasRole(ROOT_SETTER_ROLE, DEPLOYER.address).call() is True
    # Two transactions: the deployment through the proxy and the role grant.
    assert node.w3.eth.get_transaction_count(DEPLOYER.address) == nonce_before + 2
    # The earlier contracts were left as they were.
    assert usdc.functions.balanceOf(DEMO_PAYER.address).call() == later_transactions * 10**6
    # And a third call finds everything in place and sends nothing.
    assert artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address) == contracts
    assert node.w3.eth.get_transaction_count(DEPLOYER.address) == nonce_before + 2


def test_without_the_create2_proxy_deploy_all_says_so(anvil):
    node = anvil(chain_id=8453)
    node.rpc("anvil_setCode", [CREATE2_PROXY, "0x"])

    with pytest.raises(artifacts.DeployError, match="CREATE2 deployment proxy"):
        artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address)


def test_a_deployer_that_stopped_midway_is_refused(anvil):
    node = anvil(chain_id=8453)
    artifact = artifacts.load("SponToken")
    factory = node.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    send(node.w3, DEPLOYER, {"data": factory.constructor(TREASURY.address, 1).data_in_transaction})

    with pytest.raises(artifacts.DeployError, match="fresh account"):
        artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address)
