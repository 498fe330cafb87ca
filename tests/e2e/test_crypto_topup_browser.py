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

import json
import re
import threading
import traceback

import pytest
from allauth.account.models import EmailAddress
from django.db import OperationalError, connections
from playwright.sync_api import Page, expect

from billing.deposits import deposits_credit_final
from billing.selectors import user_balances
from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Chain, Deposit, DepositStatus
from chain.registry import ChainAddresses, registry_sync
from chain.services import chain_watch
from tests.chain_fixtures import TREASURY
from tests.factories import make_user
from tests.live_sqlite import sqlite_reads_do_not_wait

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PASSWORD = "correct-horse-battery-staple"
PAYER = DEV_ACCOUNTS[2]
# Confirmations before crediting. With a block a second, the page must show the deposit confirming
# before it turns final: the wallet's transaction is checked within a second of being mined, so
# four blocks leave the page about three seconds of "confirming" (two would race the check).
FINALITY = 4
TX_HASH = re.compile(r"0x[0-9a-f]{64}")
CONFIRMING = re.compile(rf"confirming [1-{FINALITY - 1}]/{FINALITY}")

# The injected wallet: EIP-1193 `request`, forwarded to the anvil node; every call is recorded.
WALLET = """
(() => {
  const rpc = %(rpc)s, account = %(account)s;
  window.__walletCalls = [];
  window.ethereum = {
    isMetaMask: false,
    async request({ method, params }) {
      window.__walletCalls.push({ method, params: params || [] });
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [account];
      if (method === "wallet_switchEthereumChain") return null;
      const response = await fetch(rpc, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: params || [] }),
      });
      const answer = await response.json();
      if (answer.error) {
        const error = new Error(answer.error.message);
        error.code = answer.error.code;
        throw error;
      }
      return answer.result;
    },
  };
})();
"""


def _table_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database table is locked" in str(exc)


class Watcher:
    """chain_watch + deposits_credit_final every 0.5 s in a thread of its own, as beat would run
    them; a run that meets SQLite's shared-cache lock is tried again at the next tick."""

    def __init__(self, chain_key: str) -> None:
        self.chain_key = chain_key
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopping.wait(0.5):
                try:
                    chain_watch(chain_key=self.chain_key)
                    deposits_credit_final()
                except Exception as exc:  # noqa: BLE001 - the test reports it
                    if not _table_locked(exc):
                        self.errors.append(traceback.format_exc())
        finally:
            connections.close_all()

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


@pytest.fixture(autouse=True)
def _sqlite_reads_do_not_wait(transactional_db, page):
    with sqlite_reads_do_not_wait():
        yield


@pytest.fixture
def arbitrum(anvil, settings):
    """Arbitrum One on anvil (chain id 42161, 1 s blocks), the contracts deployed, the registry row
    pointing at it."""
    node = anvil(chain_id=42161, block_time=1, deploy=True)
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "arbitrum": node.url}
    registry_sync(
        devnet=True,
        keys=("arbitrum",),
        addresses={
            "arbitrum": ChainAddresses(
                receiver=node.contracts["PaymentReceiver"],
                treasury=TREASURY.address,
                test_usdc=node.contracts["TestUSDC"],
            )
        },
    )
    Chain.objects.filter(key="arbitrum").update(
        rpc_url=node.url, receiver_address=node.contracts["PaymentReceiver"], finality=FINALITY, enabled=True
    )
    return node


@pytest.fixture
def developer():
    user = make_user(email="ada@example.test", password=PASSWORD, name="Ada")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def test_developer_pays_with_wallet_and_watches_the_deposit_get_credited(page: Page, live_server, arbitrum, developer):
    page.add_init_script(WALLET % {"rpc": json.dumps(arbitrum.url), "account": json.dumps(PAYER.address)})
    page.goto("/billing/topup/")
    page.fill("input[name=login]", developer.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/billing/topup/")

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

    with Watcher("arbitrum") as watcher:
        expect(state).to_have_text("credited $20.00", timeout=30_000)
    assert not watcher.errors, watcher.errors

    deposit = Deposit.objects.get()
    assert deposit.user == developer and deposit.status == DepositStatus.CREDITED
    assert deposit.payer.lower() == PAYER.address.lower()
    assert deposit.amount == 6_802_721_100_000_000
    assert arbitrum.w3.eth.get_transaction(deposit.tx_hash)["value"] == 6_802_721_100_000_000
    assert user_balances(user=developer).available == 20_000_000
    assert page.get_by_test_id("crypto-deposits").get_attribute("data-pending") is None  # polling stopped
    calls = page.evaluate("window.__walletCalls")
    assert {"method": "wallet_switchEthereumChain", "params": [{"chainId": "0xa4b1"}]} in calls
    [sent] = [call["params"][0] for call in calls if call["method"] == "eth_sendTransaction"]
    assert sent["to"].lower() == arbitrum.contracts["PaymentReceiver"].lower()
    assert int(sent["value"], 16) == 6_802_721_100_000_000
    assert option.get_by_test_id("wallet-tx").text_content() == deposit.tx_hash


def _log_in(page: Page, developer) -> None:
    page.goto("/billing/topup/")
    page.fill("input[name=login]", developer.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/billing/topup/")


def test_without_a_wallet_the_button_says_what_to_do(page: Page, live_server, arbitrum, developer):
    _log_in(page, developer)
    option = page.locator("[data-chain=arbitrum] [data-token=ETH]")
    option.get_by_test_id("usd-input").fill("20")
    option.get_by_role("button", name="Pay with wallet").click()
    expect(option.get_by_test_id("wallet-message")).to_contain_text("No browser wallet found")
    assert not Deposit.objects.exists()


# A wallet that answers the way a user or a wallet can refuse: EIP-1193 error 4001 (rejected), or
# a switch that leaves the wallet on Ethereum mainnet.
REFUSING_WALLET = """
window.ethereum = {
  async request({ method }) {
    if (method === "eth_requestAccounts") return [%(account)s];
    if (method === "wallet_switchEthereumChain") return null;  // says yes either way
    if (method === "eth_chainId") return %(stay_on_mainnet)s ? "0x1" : "0xa4b1";
    if (method === "eth_sendTransaction") {
      const error = new Error("User rejected the request.");
      error.code = 4001;
      throw error;
    }
    throw new Error("unexpected " + method);
  },
};
"""


@pytest.mark.parametrize(
    ("stay_on_mainnet", "message"),
    [
        ("false", "You rejected the request in your wallet: nothing was sent."),
        ("true", "Your wallet is on chain id 1, not Arbitrum One (42161)"),
    ],
)
def test_a_refused_payment_or_the_wrong_chain_is_said_plainly(
    page: Page, live_server, arbitrum, developer, stay_on_mainnet, message
):
    wallet = REFUSING_WALLET % {"account": json.dumps(PAYER.address), "stay_on_mainnet": stay_on_mainnet}
    page.add_init_script(wallet)
    _log_in(page, developer)
    option = page.locator("[data-chain=arbitrum] [data-token=ETH]")
    option.get_by_test_id("usd-input").fill("20")
    option.get_by_role("button", name="Pay with wallet").click()
    expect(option.get_by_test_id("wallet-message")).to_contain_text(message)
    expect(option.get_by_role("button", name="Pay with wallet")).to_be_enabled()  # free to try again
    assert not Deposit.objects.exists()


@pytest.mark.parametrize("viewport", [{"width": 390, "height": 844}])
def test_the_top_up_page_fits_a_phone(page: Page, live_server, arbitrum, developer, viewport):
    _log_in(page, developer)
    option = page.locator("[data-chain=arbitrum] [data-token=ETH]")
    option.get_by_test_id("usd-input").fill("20")
    expect(option.get_by_test_id("qr")).to_be_visible()
    wider = page.evaluate(
        """() => {
            const width = window.innerWidth;
            const wide = [...document.querySelectorAll('body *')]
                .map(e => [Math.round(e.getBoundingClientRect().right), e.tagName + '.' + e.className])
                .filter(([right]) => right > width + 1).sort((a, b) => b[0] - a[0]);
            return {scroll: document.documentElement.scrollWidth - width, widest: wide[0] || null};
        }"""
    )
    assert wider["scroll"] <= 0, f"/billing/topup/ is wider than the phone: {wider}"
