"""pytest plugin (registered in tests/conftest.py): EVM nodes for the chain and contract tests.

`anvil(chain_id=8453, block_time=None, deploy=False)` starts an anvil node with that chain id on
a free port and returns an `AnvilNode` (web3 instance `w3`, `url`, `chain_id`, the process for
anvil_*/evm_* calls); every node the test started is stopped at teardown. With deploy=True the
contracts are deployed (`contracts`: name → address) with dev account 0 as deployer and owner
and dev account 1 as the treasury.

Without the anvil binary (run `make npm`, or set ANVIL_BIN) the test is skipped, except under
CI=true, where it fails: CI must run the chain tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from chain.evm.anvil import DEV_ACCOUNTS, AnvilProcess, anvil_binary, start_anvil

if TYPE_CHECKING:  # web3 is imported by the fixture, not by every test session's conftest
    from web3 import Web3

DEPLOYER = DEV_ACCOUNTS[0]
TREASURY = DEV_ACCOUNTS[1]


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
        reason = "anvil is not installed: run `make npm` (Node.js 20+, npm ci) or set ANVIL_BIN"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: the chain tests must run)", pytrace=False)
        pytest.skip(reason)
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
