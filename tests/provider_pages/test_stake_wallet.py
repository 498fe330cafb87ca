"""The stake page's wallet part on anvil: the linked stake address, the wallet's buttons with the
server's calldata, pending unstakes with their unlock time, and the devnet's "Get test $SPON"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eth_abi import decode
from web3 import Web3

from chain.evm.anvil import DEV_ACCOUNTS
from core import clock
from providers.models import Node
from providers.stake_chain import stake_chain_index
from tests.chain_fixtures import stake_link
from tests.contracts.helpers import call
from tests.factories import make_node, make_provider

TREASURY, STAKER = DEV_ACCOUNTS[1], DEV_ACCOUNTS[5]
SPON = 10**18
FINALITY = 3


@pytest.fixture
def home(home_chain, db):
    return home_chain(staking=True, finality=FINALITY)


@pytest.fixture
def provider(db):
    provider = make_provider(display_name="New Rigs")
    make_node(provider=provider, name="rig-1", gpu_count=1, is_simulated=False, stake_covered=False)
    return provider


def _attr(html: str, testid: str, name: str) -> str:
    tag = html.split(f'data-testid="{testid}"')[0].rsplit("<button", 1)[1]
    return tag.split(f'{name}="')[1].split('"')[0]


def _args(calldata: str, types: list[str]) -> tuple:
    return decode(types, bytes.fromhex(calldata.removeprefix("0x")[8:]))


def _send_from_page(node, html: str, testid: str):
    """What the injected wallet does with a button: send its calldata to its address."""
    transaction = {
        "to": Web3.to_checksum_address(_attr(html, testid, "data-to")),
        "data": _attr(html, testid, "data-calldata"),
    }
    transaction.update(
        {"from": STAKER.address, "chainId": 8453, "nonce": node.w3.eth.get_transaction_count(STAKER.address),
         "gas": 200_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}
    )  # fmt: skip
    signed = node.w3.eth.account.sign_transaction(transaction, STAKER.private_key)
    receipt = node.w3.eth.wait_for_transaction_receipt(node.w3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 1
    return receipt


def test_without_a_stake_address_the_page_links_to_the_wallets_page(client, home, provider):
    client.force_login(provider.user)
    html = client.get("/provider/stake/").content.decode()
    assert 'href="/account/wallets/"' in html.split('data-testid="stake-link"')[1]
    assert 'data-testid="stake-approve"' not in html


def test_the_buttons_carry_the_servers_calldata(client, home, provider):
    stake_link(provider.user, STAKER.address)
    client.force_login(provider.user)
    html = client.get("/provider/stake/").content.decode()
    assert STAKER.address in html.split('data-testid="stake-address"')[1][:80]
    staking, token = home.contracts["SponStaking"], home.contracts["SponToken"]
    # The default amount is the shortfall: one GPU × 200 $SPON.
    approve = _attr(html, "stake-approve", "data-calldata")
    assert approve.startswith("0x095ea7b3") and _attr(html, "stake-approve", "data-to") == token
    assert _args(approve, ["address", "uint256"]) == (staking.lower(), 200 * SPON)
    stake = _attr(html, "stake-stake", "data-calldata")
    assert stake.startswith("0x" + Web3.keccak(text="stake(uint256)")[:4].hex().removeprefix("0x"))
    assert _args(stake, ["uint256"]) == (200 * SPON,) and _attr(html, "stake-stake", "data-to") == staking
    assert 'data-chain-id="0x2105"' in html and "js/stake.js" in html
    need = html.split('data-testid="stake-node-need"')[1].split("</tr>")[0]
    assert "rig-1" in need and ">200<" in need and "not matched" in need  # what each node needs

    html = client.get("/provider/stake/?amount=1500.5&unstake=20").content.decode()
    assert _args(_attr(html, "stake-stake", "data-calldata"), ["uint256"]) == (1500_500_000_000_000_000_000,)
    assert _args(_attr(html, "stake-unstake", "data-calldata"), ["uint256"]) == (20 * SPON,)
    html = client.get("/provider/stake/?amount=1e9").content.decode()
    assert "Enter an amount of $SPON" in html


def test_faucet_then_page_buttons_make_the_node_rentable_and_unstake_shows_its_unlock(client, home, provider, settings):
    settings.DEBUG, settings.CHAIN_DEVNET = True, True
    stake_link(provider.user, STAKER.address)
    client.force_login(provider.user)
    spon = home.contract("SponToken")
    before = spon.functions.balanceOf(STAKER.address).call()
    response = client.post("/provider/stake/faucet/")
    assert response.status_code == 302
    assert spon.functions.balanceOf(STAKER.address).call() == before + 10_000 * SPON

    html = client.get("/provider/stake/").content.decode()
    assert 'data-testid="stake-faucet"' in html
    _send_from_page(home, html, "stake-approve")
    _send_from_page(home, html, "stake-stake")
    home.rpc("anvil_mine", [hex(FINALITY - 1)])
    stake_chain_index()
    assert Node.objects.get(provider=provider).stake_covered  # rentable: no admin involved

    html = client.get("/provider/stake/?unstake=50").content.decode()
    assert 'data-testid="stake-chain-active">200<' in html
    assert "on chain, block" in html.split('data-testid="stake-history"')[1]
    receipt = _send_from_page(home, html, "stake-unstake")
    home.rpc("anvil_mine", [hex(FINALITY - 1)])
    stake_chain_index()
    html = client.get("/provider/stake/").content.decode()
    unlock = datetime.fromtimestamp(home.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + 300, tz=UTC)
    row = html.split('data-testid="stake-pending-row"')[1].split("</tr>")[0]
    assert "50" in row and unlock.strftime("%Y-%m-%d %H:%M:%S") in row and "cooling down" in row
    assert 'data-testid="stake-withdraw"' not in html
    assert not Node.objects.get(provider=provider).stake_covered  # 150 active < 200


def test_the_faucet_is_404_outside_a_devnet(client, home, provider, settings):
    settings.DEBUG, settings.CHAIN_DEVNET = False, False
    stake_link(provider.user, STAKER.address)
    client.force_login(provider.user)
    assert client.post("/provider/stake/faucet/").status_code == 404
    assert 'data-testid="stake-faucet"' not in client.get("/provider/stake/").content.decode()


def test_an_unlocked_unstake_offers_withdraw_with_the_servers_calldata(client, home, provider):
    stake_link(provider.user, STAKER.address)
    client.force_login(provider.user)
    spon, staking = home.contract("SponToken"), home.contract("SponStaking")
    call(home.w3, TREASURY, spon.functions.transfer(STAKER.address, 300 * SPON))
    call(home.w3, STAKER, spon.functions.approve(home.contracts["SponStaking"], 300 * SPON))
    call(home.w3, STAKER, staking.functions.stake(300 * SPON))
    call(home.w3, STAKER, staking.functions.requestUnstake(100 * SPON))
    home.rpc("evm_increaseTime", [301])
    home.rpc("anvil_mine", [hex(FINALITY)])
    stake_chain_index()
    try:
        clock.advance(301)  # the server's clock passes the unlock time with the chain's
        html = client.get("/provider/stake/").content.decode()
    finally:
        clock.reset()
    assert "ready to withdraw" in html.split('data-testid="stake-pending-row"')[1]
    withdraw = _attr(html, "stake-withdraw", "data-calldata")
    assert withdraw == "0x" + Web3.keccak(text="withdraw()")[:4].hex().removeprefix("0x")
    _send_from_page(home, html, "stake-withdraw")
    assert spon.functions.balanceOf(STAKER.address).call() == 100 * SPON
