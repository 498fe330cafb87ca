"""The compiled contracts (contracts/build/*.json, committed; `make contracts` rebuilds them) and
their deployment on a devnet.

`deploy_all` deploys SponToken, TestUSDC and PaymentReceiver, then SponStaking and LeaseRegistry,
from a fresh deployer (nonce 0) in a fixed order, so on every devnet they live at the same CREATE
addresses (deployer, nonces 0, 1, 2, then 5, 6: nonces 3 and 4 allow the tokens on the receiver,
7 and 8 grant the slasher and recorder roles); `predicted_addresses` says where without a node.
The two later contracts came after the first three, so those kept their addresses.

RewardDistributor came after those nine transactions, when a devnet's deployer had already sent
others (the demo payer's USDC at nonce 9, then the recorder's, slasher's and payouts' transactions:
on a devnet the deployer is also the operator). No nonce is free for it on a saved devnet, so it is
deployed with CREATE2 through the deterministic deployment proxy anvil (and most public chains)
has at `CREATE2_FACTORY`: its address depends on the deployer (its admin and SponToken's deployer)
and its build, not on a nonce. On a fresh deployer that deployment and its role grant are nonces 9
and 10. A changed build of the contract means a new address, where a saved devnet gets the new code.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_account import Account
from web3 import Web3
from web3.utils.address import get_create2_address, get_create_address

BUILD_DIR = Path(__file__).resolve().parents[2] / "contracts" / "build"

# The deployer's nonce of each transaction of `deploy_all`, in order: three contracts (0, 1, 2),
# two setTokenAllowed calls (3, 4), two more contracts (5, 6) and two role grants (7, 8).
DEPLOY_NONCES = {"SponToken": 0, "TestUSDC": 1, "PaymentReceiver": 2, "SponStaking": 5, "LeaseRegistry": 6}
# Deployed with CREATE2 (see the module's docstring), each under its fixed salt.
CREATE2_SALTS = {"RewardDistributor": Web3.keccak(text="spheron:RewardDistributor")}
# Arachnid's deterministic deployment proxy: calldata = salt (32 bytes) + init code; it CREATE2s the
# contract and returns its address. In anvil's genesis (and in every state anvil saves).
CREATE2_FACTORY = "0x4e59b44847b379578588920cA78FbF26c0B4956C"
CONTRACTS = (*DEPLOY_NONCES, *CREATE2_SALTS)
_FIRST_CONTRACTS = ("SponToken", "TestUSDC", "PaymentReceiver")  # what deploy_all deployed before SponStaking
_FIRST_TRANSACTIONS = 5  # the transactions of those: an older devnet state stops here
_NONCE_TRANSACTIONS = 9  # the transactions of the contracts at CREATE addresses and their set-up
DEPLOY_TRANSACTIONS = 11  # a fresh deployer's: those nine, RewardDistributor and its role grant
DEVNET_UNSTAKE_COOLDOWN_SECONDS = 300  # production's 14 days would stall every devnet walkthrough
SPON_DECIMALS = 18
SPON_INITIAL_SUPPLY = 1_000_000_000 * 10**SPON_DECIMALS  # minted at deploy to the treasury
USDC_DECIMALS = 6
# Fixed gas: estimation runs against the latest block, where (with a block time) the contract
# called may not exist yet.
_SET_TOKEN_ALLOWED_GAS = 100_000
_GRANT_ROLE_GAS = 100_000


class DeployError(RuntimeError):
    pass


@cache
def load(name: str) -> dict[str, Any]:
    """The artifact of contract `name`: abi, bytecode, deployedBytecode (0x-hex), compiler."""
    path = BUILD_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no compiled contract {name!r} in {BUILD_DIR} (run `make contracts`)")
    return json.loads(path.read_text(encoding="utf-8"))


def abi(name: str) -> list[dict[str, Any]]:
    return load(name)["abi"]


def contract(w3: Web3, name: str, address: str):
    """A web3 contract object for the deployed contract `name` at `address`."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi(name))


def predicted_addresses(deployer: str) -> dict[str, str]:
    """Where `deploy_all` puts each contract for this deployer (checksummed), without a node."""
    deployer = Web3.to_checksum_address(deployer)
    addresses = {name: get_create_address(deployer, nonce) for name, nonce in DEPLOY_NONCES.items()}
    init_code = _reward_distributor_init_code(addresses["SponToken"], deployer)
    addresses["RewardDistributor"] = get_create2_address(
        CREATE2_FACTORY, "0x" + CREATE2_SALTS["RewardDistributor"].hex(), "0x" + init_code.hex()
    )
    return addresses


def _reward_distributor_init_code(spon_token: str, admin: str) -> bytes:
    """RewardDistributor's creation code with its constructor arguments (the CREATE2 init code)."""
    artifact = load("RewardDistributor")
    [constructor] = [item for item in artifact["abi"] if item["type"] == "constructor"]
    types = [argument["type"] for argument in constructor["inputs"]]
    return bytes.fromhex(artifact["bytecode"].removeprefix("0x")) + encode(types, [spon_token, admin])


def deploy_all(
    w3: Web3,
    *,
    deployer_key: str,
    treasury: str,
    spon_supply: int = SPON_INITIAL_SUPPLY,
    unstake_cooldown_seconds: int = DEVNET_UNSTAKE_COOLDOWN_SECONDS,
    operator: str | None = None,
    timeout: float = 120.0,
) -> dict[str, str]:
    """Deploys SponToken (supply to `treasury`), TestUSDC (owned by the deployer, who mints it on
    devnets) and PaymentReceiver (owned by the deployer, withdrawing to `treasury`), allows both
    tokens on the receiver, then deploys SponStaking (of SponToken, slashing to `treasury`, with
    `unstake_cooldown_seconds`) and LeaseRegistry (both administered by the deployer) and grants
    `operator` (default: the deployer) SponStaking's SLASHER_ROLE and LeaseRegistry's
    RECORDER_ROLE; then RewardDistributor (of SponToken, administered by the deployer; CREATE2)
    with ROOT_SETTER_ROLE for `operator`. It holds no $SPON yet: the supply is the treasury's,
    whose key this function does not have. Returns {contract name: address}.

    The deployer must be fresh (nonce 0) so the addresses are the predicted ones; if it already
    deployed them (a devnet restarted from its saved state) they are returned as they are. A
    state saved before SponStaking existed (the first three deployed, nonce 5) gets the rest; a
    state saved before RewardDistributor existed (the first five deployed, whatever the deployer
    sent since) gets RewardDistributor.
    """
    deployer = Account.from_key(deployer_key)
    treasury = Web3.to_checksum_address(treasury)
    operator = Web3.to_checksum_address(operator or deployer.address)
    addresses = predicted_addresses(deployer.address)
    first = {name: addresses[name] for name in _FIRST_CONTRACTS}
    by_nonce = {name: addresses[name] for name in DEPLOY_NONCES}
    nonce = w3.eth.get_transaction_count(deployer.address, "pending")
    has_distributor = bool(w3.eth.get_code(addresses["RewardDistributor"]))
    if nonce >= _NONCE_TRANSACTIONS and all(w3.eth.get_code(a) for a in by_nonce.values()):
        if has_distributor:
            return addresses
        start = "distributor"
    elif nonce == _FIRST_TRANSACTIONS and all(w3.eth.get_code(a) for a in first.values()) and not has_distributor:
        start = "staking"
    elif nonce == 0 and not has_distributor:
        start = "token"
    else:
        raise DeployError(
            f"deployer {deployer.address} has nonce {nonce} but not the contracts at {addresses}: "
            "deploy from a fresh account so the addresses are deterministic"
        )
    if not w3.eth.get_code(CREATE2_FACTORY):
        raise DeployError(
            f"no CREATE2 deployment proxy at {CREATE2_FACTORY} on chain {w3.eth.chain_id}: "
            "RewardDistributor cannot be put at its predicted address (anvil has the proxy unless "
            "started with --disable-default-create2-deployer)"
        )
    chain_id = w3.eth.chain_id

    def send(transaction: dict[str, Any]) -> bytes:
        signed = deployer.sign_transaction(transaction)
        return w3.eth.send_raw_transaction(signed.raw_transaction)

    def deploy(name: str, *args: Any) -> bytes:
        artifact = load(name)
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        return send(factory.constructor(*args).build_transaction({**base, "nonce": DEPLOY_NONCES[name]}))

    def grant(contract_name: str, role: str, at_nonce: int) -> bytes:
        deployed = contract(w3, contract_name, addresses[contract_name])
        call = deployed.functions.grantRole(Web3.keccak(text=role), operator)
        return send(call.build_transaction({**base, "nonce": at_nonce, "gas": _GRANT_ROLE_GAS}))

    base = {"from": deployer.address, "chainId": chain_id}
    # All transactions are sent before waiting for any: with a block time, one block holds them all.
    hashes = []
    if start == "token":
        hashes.append(deploy("SponToken", treasury, spon_supply))
        hashes.append(deploy("TestUSDC", deployer.address))
        hashes.append(deploy("PaymentReceiver", deployer.address, treasury))
        receiver = contract(w3, "PaymentReceiver", addresses["PaymentReceiver"])
        for offset, token in enumerate(("SponToken", "TestUSDC")):
            transaction = receiver.functions.setTokenAllowed(addresses[token], True).build_transaction(
                {**base, "nonce": 3 + offset, "gas": _SET_TOKEN_ALLOWED_GAS}
            )
            hashes.append(send(transaction))
    if start in ("token", "staking"):
        staking_args = (addresses["SponToken"], treasury, unstake_cooldown_seconds, deployer.address)
        hashes.append(deploy("SponStaking", *staking_args))
        hashes.append(deploy("LeaseRegistry", deployer.address))
        hashes.append(grant("SponStaking", "SLASHER_ROLE", 7))
        hashes.append(grant("LeaseRegistry", "RECORDER_ROLE", 8))
        nonce = _NONCE_TRANSACTIONS
    salt = CREATE2_SALTS["RewardDistributor"]
    init_code = _reward_distributor_init_code(addresses["SponToken"], deployer.address)
    create2 = {**base, "to": CREATE2_FACTORY, "data": salt + init_code, "value": 0, "nonce": nonce}
    create2["gas"] = w3.eth.estimate_gas(create2)  # the constructor only stores its arguments
    priority_fee = w3.eth.max_priority_fee
    base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
    hashes.append(send({**create2, "maxPriorityFeePerGas": priority_fee, "maxFeePerGas": priority_fee + 2 * base_fee}))
    hashes.append(grant("RewardDistributor", "ROOT_SETTER_ROLE", nonce + 1))
    for tx_hash in hashes:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.05)
        if receipt["status"] != 1:
            raise DeployError(f"deployment transaction {tx_hash.hex()} reverted")
    for name, address in addresses.items():
        if not w3.eth.get_code(address):
            raise DeployError(f"{name}: no code at {address}")
    return addresses
