from __future__ import annotations

import pytest

from chain.registry import ChainAddresses, registry_sync
from tests.chain_fixtures import TREASURY
from tests.factories import make_user


@pytest.fixture
def renter(db):
    return make_user(email="renter@example.test")


@pytest.fixture
def devnet_chain(anvil, settings, db):
    """Base (8453) on anvil with the contracts deployed and the registry row written (devnet
    values: finality CHAIN_DEVNET_FINALITY = 3, demo rates dated now)."""

    def start(key: str = "base", chain_id: int = 8453):
        node = anvil(chain_id=chain_id, deploy=True)
        settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, key: node.url}
        settings.CHAIN_DEVNET_FINALITY = 3
        registry_sync(
            devnet=True,
            keys=(key,),
            addresses={
                key: ChainAddresses(
                    receiver=node.contracts["PaymentReceiver"],
                    treasury=TREASURY.address,
                    spon_token=node.contracts["SponToken"],
                    test_usdc=node.contracts["TestUSDC"],
                )
            },
        )
        return node

    return start
