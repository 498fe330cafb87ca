"""On a local devnet the top-up page can pay from the devnet's test wallet (the demo developer
needs no browser wallet to try crypto top-ups): the server sends the native coin with the user's
reference and checks the transaction as a pasted one. Never outside DEBUG + CHAIN_DEVNET."""

from __future__ import annotations

import pytest
from django.test import Client

from chain.devnet import DEMO_PAYER
from chain.models import Deposit
from chain.registry import ChainAddresses, registry_sync
from tests.chain_fixtures import TREASURY

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _devnet(anvil, settings, **node_options):
    settings.DEBUG = True
    settings.CHAIN_DEVNET = True
    node = anvil(chain_id=42161, deploy=True, **node_options)
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "arbitrum": node.url}
    settings.CHAIN_DEVNET_FINALITY = 3
    registry_sync(
        devnet=True,
        keys=("arbitrum",),
        addresses={"arbitrum": ChainAddresses(receiver=node.contracts["PaymentReceiver"], treasury=TREASURY.address)},
    )
    return node


@pytest.fixture
def arbitrum(anvil, settings):
    return _devnet(anvil, settings)


def test_the_calculator_offers_the_devnet_wallet_for_the_native_coin_only(dev_client: Client, arbitrum):
    native = dev_client.get("/billing/topup/crypto/amount/", {"chain": "arbitrum", "token": "ETH", "usd": "30"}, **HX)
    assert native.status_code == 200 and 'data-testid="devnet-pay"' in native.content.decode()
    usdc = dev_client.get("/billing/topup/crypto/amount/", {"chain": "arbitrum", "token": "USDC", "usd": "30"}, **HX)
    assert usdc.status_code in (200, 404) and 'data-testid="devnet-pay"' not in usdc.content.decode()


def test_paying_from_the_devnet_wallet_sends_a_deposit_with_the_users_reference(dev_client, developer, arbitrum):
    response = dev_client.post(
        "/billing/topup/crypto/devnet-pay/", {"chain": "arbitrum", "base_units": str(10**16)}, **HX
    )
    assert response.status_code == 200, response.content.decode()[:500]
    deposit = Deposit.objects.get()
    assert deposit.user == developer and deposit.amount == 10**16 and deposit.payer == DEMO_PAYER.address.lower()
    assert "confirming" in response.content.decode()


def test_with_one_second_blocks_the_payment_is_found_once_mined_not_missed(dev_client, developer, anvil, settings):
    _devnet(anvil, settings, block_time=1)  # as under make run: no automine
    response = dev_client.post(
        "/billing/topup/crypto/devnet-pay/", {"chain": "arbitrum", "base_units": str(10**16)}, **HX
    )
    assert response.status_code == 200, response.content.decode()[:500]
    assert Deposit.objects.get().user == developer


@pytest.mark.parametrize("form", [{"chain": "nope", "base_units": "1"}, {"chain": "arbitrum", "base_units": "-1"},
                                  {"chain": "arbitrum", "base_units": "1e18"}, {}])  # fmt: skip
def test_bad_input_is_a_422_message(dev_client, arbitrum, form):
    response = dev_client.post("/billing/topup/crypto/devnet-pay/", form, **HX)
    assert response.status_code == 422 and "Choose a chain on the devnet" in response.content.decode()
    assert not Deposit.objects.exists()


def test_outside_a_devnet_it_does_not_exist(dev_client, settings, db):
    settings.DEBUG = False
    response = dev_client.post("/billing/topup/crypto/devnet-pay/", {"chain": "arbitrum", "base_units": "1"}, **HX)
    assert response.status_code == 404
