"""The compiled contracts (contracts/build/*.json, committed; `make contracts` rebuilds them) and
their deployment on a devnet.

`deploy_all` deploys SponToken, TestUSDC and PaymentReceiver from a fresh deployer (nonce 0) in a
fixed order, so on every devnet they live at the same CREATE addresses (deployer, nonce 0, 1, 2);
`predicted_addresses` says where without a node.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.utils.address import get_create_address

BUILD_DIR = Path(__file__).resolve().parents[2] / "contracts" / "build"

# Deployment order = the deployer's nonces 0, 1, 2; then two setTokenAllowed calls (nonces 3, 4).
CONTRACTS = ("SponToken", "TestUSDC", "PaymentReceiver")
SPON_DECIMALS = 18
SPON_INITIAL_SUPPLY = 1_000_000_000 * 10**SPON_DECIMALS  # minted at deploy to the treasury
USDC_DECIMALS = 6
_SET_TOKEN_ALLOWED_GAS = 100_000


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
    return {name: get_create_address(deployer, nonce) for nonce, name in enumerate(CONTRACTS)}


def deploy_all(
    w3: Web3,
    *,
    deployer_key: str,
    treasury: str,
    spon_supply: int = SPON_INITIAL_SUPPLY,
    timeout: float = 120.0,
) -> dict[str, str]:
    """Deploys SponToken (supply to `treasury`), TestUSDC (owned by the deployer, who mints it on
    devnets) and PaymentReceiver (owned by the deployer, withdrawing to `treasury`), and allows
    both tokens on the receiver. Returns {contract name: address}.

    The deployer must be fresh (nonce 0) so the addresses are the predicted ones; if it already
    deployed them (a devnet restarted from its saved state) they are returned as they are.
    """
    deployer = Account.from_key(deployer_key)
    treasury = Web3.to_checksum_address(treasury)
    addresses = predicted_addresses(deployer.address)
    nonce = w3.eth.get_transaction_count(deployer.address, "pending")
    if nonce != 0:
        if nonce >= len(CONTRACTS) + 2 and all(w3.eth.get_code(a) for a in addresses.values()):
            return addresses
        raise DeployError(
            f"deployer {deployer.address} has nonce {nonce} but not the contracts at {addresses}: "
            "deploy from a fresh account so the addresses are deterministic"
        )
    chain_id = w3.eth.chain_id

    def send(transaction: dict[str, Any]) -> bytes:
        signed = deployer.sign_transaction(transaction)
        return w3.eth.send_raw_transaction(signed.raw_transaction)

    base = {"from": deployer.address, "chainId": chain_id}
    constructor_args = {
        "SponToken": (treasury, spon_supply),
        "TestUSDC": (deployer.address,),
        "PaymentReceiver": (deployer.address, treasury),
    }
    # All transactions are sent before waiting for any: with a block time, one block holds them all.
    hashes = []
    for nonce, name in enumerate(CONTRACTS):
        artifact = load(name)
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        hashes.append(send(factory.constructor(*constructor_args[name]).build_transaction({**base, "nonce": nonce})))
    receiver = contract(w3, "PaymentReceiver", addresses["PaymentReceiver"])
    for offset, token in enumerate(("SponToken", "TestUSDC")):
        transaction = receiver.functions.setTokenAllowed(addresses[token], True).build_transaction(
            {**base, "nonce": len(CONTRACTS) + offset, "gas": _SET_TOKEN_ALLOWED_GAS}
        )
        hashes.append(send(transaction))
    for tx_hash in hashes:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.05)
        if receipt["status"] != 1:
            raise DeployError(f"deployment transaction {tx_hash.hex()} reverted")
    for name, address in addresses.items():
        if not w3.eth.get_code(address):
            raise DeployError(f"{name}: no code at {address}")
    return addresses
