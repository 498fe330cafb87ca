"""pytest plugin (registered in tests/conftest.py): EVM nodes for the chain and contract tests.

`anvil(chain_id=8453, block_time=None, deploy=False)` starts an anvil node with that chain id on
a free port and returns an `AnvilNode` (web3 instance `w3`, `url`, `chain_id`, the process for
anvil_*/evm_* calls); every node the test started is stopped at teardown. With deploy=True the
contracts are deployed (`contracts`: name → address) with dev account 0 as deployer and owner
and dev account 1 as the treasury.

`home_chain(staking=False, commitments=False, rewards=False, **columns)` starts the home chain
"base" that way and configures the parts asked for; `chain_register` writes a chain's registry row
for a node; `stake_link` links a stake address as if its owner had signed.

Without the anvil binary (run `make npm`, or set ANVIL_BIN) the test is skipped, except under
CI=true, where it fails: CI must run the chain tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from chain.evm.anvil import DEV_ACCOUNTS, AnvilProcess, anvil_binary, start_anvil
from tests.needs import unavailable

if TYPE_CHECKING:  # web3 is imported by the fixture, not by every test session's conftest
    from web3 import Web3

DEPLOYER = DEV_ACCOUNTS[0]  # deploys the contracts and holds every role of them
TREASURY = DEV_ACCOUNTS[1]
RECORDER_KEY_ENV = "CHAIN_TEST_RECORDER_KEY"  # home_chain(commitments=True): LeaseRegistry's recorder
ROOT_SETTER_KEY_ENV = "CHAIN_TEST_ROOT_SETTER_KEY"  # home_chain(rewards=True): RewardDistributor's root setter
REWARD_POOL = 1_000 * 10**18  # home_chain(rewards=True): the $SPON the treasury puts in RewardDistributor
HOME_CHAIN_ID = 8453  # Base, the devnet's home chain


@dataclass
class AnvilNode:
    process: AnvilProcess
    w3: Web3
    contracts: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def chain_id(self) -> int:
        return self.process.chain_id

    def rpc(self, method: str, params: list | None = None):
        return self.process.rpc(method, params)

    def contract(self, name: str):
        from chain.evm import artifacts

        return artifacts.contract(self.w3, name, self.contracts[name])


def require_anvil() -> str:
    """The anvil binary, or skip (fail under CI=true) with the reason."""
    binary = anvil_binary()
    if binary is None:
        unavailable("anvil is not installed: run `make npm` (Node.js 20+, npm ci) or set ANVIL_BIN")
    return binary


@pytest.fixture
def anvil() -> Iterator[Callable[..., AnvilNode]]:
    from web3 import Web3

    from chain.evm import artifacts

    binary = require_anvil()
    started: list[AnvilProcess] = []

    def start(*, chain_id: int = 8453, block_time: float | None = None, deploy: bool = False) -> AnvilNode:
        process = start_anvil(chain_id=chain_id, block_time=block_time, binary=binary)
        started.append(process)
        node = AnvilNode(process=process, w3=Web3(Web3.HTTPProvider(process.url, request_kwargs={"timeout": 30})))
        if deploy:
            node.contracts = artifacts.deploy_all(node.w3, deployer_key=DEPLOYER.private_key, treasury=TREASURY.address)
        return node

    yield start
    for process in reversed(started):
        process.stop()


def chain_register(
    settings, node: AnvilNode, *, key: str = "base", rpc_url: str | None = None, spon: bool = True, **columns
):
    """Chain `key` as `manage.py chains_sync` writes it on a devnet, for `node` with the contracts:
    its receiver, TestUSDC and (unless spon=False) $SPON, the treasury, the demo rates; the row's and
    the settings' RPC URL are the node's, or `rpc_url` (a proxy in front of it). `columns` overrides
    the row's (finality, block_time_ms). Returns the Chain."""
    from chain.models import Chain
    from chain.registry import ChainAddresses, registry_sync

    url = rpc_url or node.url
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, key: url}
    addresses = ChainAddresses(
        receiver=node.contracts["PaymentReceiver"],
        treasury=TREASURY.address,
        spon_token=node.contracts["SponToken"] if spon else "",
        test_usdc=node.contracts["TestUSDC"],
    )
    registry_sync(devnet=True, keys=(key,), addresses={key: addresses})
    Chain.objects.filter(key=key).update(rpc_url=url, **columns)
    return Chain.objects.get(key=key)


@pytest.fixture
def home_chain(anvil, settings, monkeypatch) -> Callable[..., AnvilNode]:
    """Starts the home chain "base" on anvil (Base's chain id, the contracts, `chain_register`'s
    row; `columns` override the row's) and configures the parts asked for, as `make run` does:
    - staking: SponStaking is the stake contract, 200 $SPON per GPU;
    - commitments: LeaseRegistry, the recorder's key in RECORDER_KEY_ENV;
    - rewards: RewardDistributor on the staking chain, the root setter's key in ROOT_SETTER_KEY_ENV,
      REWARD_POOL $SPON sent to it from the treasury.
    The keys are DEPLOYER's (anvil's public key #0), so DEBUG is on when one is asked for: anvil's
    keys are refused otherwise."""

    from tests.contracts.helpers import call

    def start(*, staking: bool = False, commitments: bool = False, rewards: bool = False, **columns) -> AnvilNode:
        node = anvil(chain_id=HOME_CHAIN_ID, deploy=True)
        chain_register(settings, node, **columns)
        if staking:
            settings.STAKING_CHAIN_KEY = "base"
            settings.STAKING_CONTRACT_ADDRESS = node.contracts["SponStaking"]
            settings.MIN_STAKE_PER_GPU_SPON = 200
        if commitments:
            settings.COMMITMENTS_CHAIN_KEY = "base"
            settings.LEASE_REGISTRY_ADDRESS = node.contracts["LeaseRegistry"]
            settings.COMMITMENTS_RECORDER_KEY_ENV = RECORDER_KEY_ENV
            monkeypatch.setenv(RECORDER_KEY_ENV, DEPLOYER.private_key)
        if rewards:
            settings.STAKING_CHAIN_KEY = "base"
            settings.REWARD_DISTRIBUTOR_ADDRESS = node.contracts["RewardDistributor"]
            settings.REWARD_ROOT_KEY_ENV = ROOT_SETTER_KEY_ENV
            monkeypatch.setenv(ROOT_SETTER_KEY_ENV, DEPLOYER.private_key)
            pay = node.contract("SponToken").functions.transfer(node.contracts["RewardDistributor"], REWARD_POOL)
            call(node.w3, TREASURY, pay)
        if commitments or rewards:
            settings.DEBUG = True
        return node

    return start


def stake_link(user, address: str, *, chain_id: int = HOME_CHAIN_ID):
    """`address` linked as the user's stake address, as if they had signed for it on the wallets page."""
    from django.utils import timezone

    from accounts.models import WalletLink

    return WalletLink.objects.create(
        user=user, address=address, purpose="stake", chain_id=chain_id, message="signed",
        signature="0x" + "00" * 65, linked_at=timezone.now(),
    )  # fmt: skip
