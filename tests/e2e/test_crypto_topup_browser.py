"""A developer tops up in crypto with "Pay with wallet": Chromium, an injected EIP-1193 provider
backed by an anvil node (Arbitrum's chain id 42161, a block a second), and the page watching the
deposit go from confirming n/N to credited.

The wallet is the boundary replaced here: `window.ethereum` forwards every request to the anvil
node, where dev account 2 is unlocked (so eth_sendTransaction signs there, as a wallet would), and
answers eth_requestAccounts and wallet_switchEthereumChain as a wallet does. The chain watcher and
the crediting run in a thread of the test process, as beat would run them; the page only polls
the server.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from billing.deposits import deposits_credit_final
from billing.selectors import user_balances
from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Deposit, DepositStatus
from chain.services import chain_watch
from tests.chain_fixtures import chain_register
from tests.e2e.beat import Beat
from tests.e2e.layout import PHONE, overflow
from tests.e2e.login import log_in, verified_user
from tests.e2e.wallet import install_wallet, sent_transactions, wallet_calls

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("live_sqlite_reads"),
]
PAYER = DEV_ACCOUNTS[2]
# Confirmations before crediting. With a block a second, the page must show the deposit confirming
# before it turns final: the wallet's transaction is checked within a second of being mined, so
# four blocks leave the page about three seconds of "confirming" (two would race the check).
FINALITY = 4
TX_HASH = re.compile(r"0x[0-9a-f]{64}")
CONFIRMING = re.compile(rf"confirming [1-{FINALITY - 1}]/{FINALITY}")


def deposit_watcher(chain_key: str) -> Beat:
    """chain_watch + deposits_credit_final every 0.5 s, as beat would run them."""

    def tick() -> None:
        chain_watch(chain_key=chain_key)
        deposits_credit_final()

    return Beat(tick)


@pytest.fixture
def arbitrum(anvil, settings):
    """Arbitrum One on anvil (chain id 42161, 1 s blocks), the contracts deployed, the registry row
    pointing at it."""
    node = anvil(chain_id=42161, block_time=1, deploy=True)
    chain_register(settings, node, key="arbitrum", spon=False, finality=FINALITY)
    return node


@pytest.fixture
def developer():
    user = verified_user("ada@example.test", name="Ada")
    return user


def test_developer_pays_with_wallet_and_watches_the_deposit_get_credited(page: Page, live_server, arbitrum, developer):
    install_wallet(page, PAYER.address, rpc=arbitrum.url)
    log_in(page, developer.email, "/billing/topup/")

    chain = page.locator("[data-chain=arbitrum]")
    expect(chain).to_contain_text("1 ETH = $3000")
    expect(chain.locator("[data-token=ETH] [data-testid=fee]")).to_have_text("2%")
    expect(page.get_by_test_id("no-deposits")).to_be_visible()

    # The calculator: $20 of credits, computed by the server (htmx), with the QR code and the button.
    option = chain.locator("[data-token=ETH]")
    option.get_by_test_id("usd-input").fill("20")
    expect(option.get_by_test_id("amount-to-send")).to_have_text("0.0068027211 ETH")
    expect(option.get_by_test_id("qr").locator("svg")).to_be_visible()

    option.get_by_role("button", name="Pay with wallet").click()
    expect(option.get_by_test_id("wallet-tx")).to_have_text(TX_HASH)
    # The page posted the hash to the check form at once: the deposit is there, confirming.
    state = page.get_by_test_id("deposit-state")
    expect(state).to_have_text(CONFIRMING, timeout=15_000)
    expect(page.get_by_test_id("check-result")).to_contain_text("0.0068027211 ETH on Arbitrum One — confirming")

    with deposit_watcher("arbitrum") as watcher:
        expect(state).to_have_text("credited $20.00", timeout=30_000)
    assert not watcher.errors, watcher.errors

    deposit = Deposit.objects.get()
    assert deposit.user == developer and deposit.status == DepositStatus.CREDITED
    assert deposit.payer.lower() == PAYER.address.lower()
    assert deposit.amount == 6_802_721_100_000_000
    assert arbitrum.w3.eth.get_transaction(deposit.tx_hash)["value"] == 6_802_721_100_000_000
    assert user_balances(user=developer).available == 20_000_000
    assert page.get_by_test_id("crypto-deposits").get_attribute("data-pending") is None  # polling stopped
    assert {"method": "wallet_switchEthereumChain", "params": [{"chainId": "0xa4b1"}]} in wallet_calls(page)
    [sent] = sent_transactions(page)
    assert sent["to"].lower() == arbitrum.contracts["PaymentReceiver"].lower()
    assert int(sent["value"], 16) == 6_802_721_100_000_000
    assert option.get_by_test_id("wallet-tx").text_content() == deposit.tx_hash


def test_without_a_wallet_the_button_says_what_to_do(page: Page, live_server, arbitrum, developer):
    log_in(page, developer.email, "/billing/topup/")
    option = page.locator("[data-chain=arbitrum] [data-token=ETH]")
    option.get_by_test_id("usd-input").fill("20")
    option.get_by_role("button", name="Pay with wallet").click()
    expect(option.get_by_test_id("wallet-message")).to_contain_text("No browser wallet found")
    assert not Deposit.objects.exists()


@pytest.mark.parametrize(
    ("wallet_chain_id", "message"),
    [
        ("0xa4b1", "You rejected the request in your wallet: nothing was sent."),
        ("0x1", "Your wallet is on chain id 1, not Arbitrum One (42161)"),  # the switch left it on mainnet
    ],
)
def test_a_refused_payment_or_the_wrong_chain_is_said_plainly(
    page: Page, live_server, arbitrum, developer, wallet_chain_id, message
):
    """The user refuses the payment in the wallet (EIP-1193 error 4001), or the wallet says yes to the
    switch but stays on Ethereum mainnet."""
    install_wallet(page, PAYER.address, answers={"eth_chainId": wallet_chain_id}, reject=("eth_sendTransaction",))
    log_in(page, developer.email, "/billing/topup/")
    option = page.locator("[data-chain=arbitrum] [data-token=ETH]")
    option.get_by_test_id("usd-input").fill("20")
    option.get_by_role("button", name="Pay with wallet").click()
    expect(option.get_by_test_id("wallet-message")).to_contain_text(message)
    expect(option.get_by_role("button", name="Pay with wallet")).to_be_enabled()  # free to try again
    assert not Deposit.objects.exists()


@pytest.mark.parametrize("viewport", [PHONE])
def test_the_top_up_page_fits_a_phone(page: Page, live_server, arbitrum, developer, viewport):
    log_in(page, developer.email, "/billing/topup/")
    option = page.locator("[data-chain=arbitrum] [data-token=ETH]")
    option.get_by_test_id("usd-input").fill("20")
    expect(option.get_by_test_id("qr")).to_be_visible()
    wider = overflow(page)
    assert wider["scroll"] <= 0, f"/billing/topup/ is wider than the phone: {wider}"
