"""A provider links a stake wallet by signing in the browser: Chromium, an injected EIP-1193
provider backed by an anvil node, and the Sign-In with Ethereum message written by the server.

The wallet is the boundary replaced here: `window.ethereum` answers eth_requestAccounts with dev
account 3 and forwards everything else to anvil, where that account is unlocked, so personal_sign
is signed there, as a wallet would sign it. No transaction is sent: linking costs no gas.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from accounts.models import WalletLink
from chain.evm.anvil import DEV_ACCOUNTS
from tests.e2e.login import log_in, verified_user
from tests.e2e.wallet import REJECT_THE_REST, install_wallet, wallet_calls

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("live_sqlite_reads"),
]
SIGNER = DEV_ACCOUNTS[3]


@pytest.fixture
def provider(settings, live_server):
    settings.SITE_URL = live_server.url  # the domain the signed message names
    user = verified_user("grace@example.test", name="Grace", is_provider=True)
    return user


def test_provider_links_a_stake_wallet_by_signing_in_the_browser(page: Page, anvil, provider):
    node = anvil(chain_id=8453)
    install_wallet(page, SIGNER.address, rpc=node.url)
    log_in(page, provider.email, "/account/")
    page.get_by_test_id("account-wallets-link").click()
    page.wait_for_url("**/account/wallets/")
    expect(page.get_by_test_id("wallet-stake-address")).to_have_text("No address linked.")

    page.get_by_test_id("wallet-stake-button").click()

    expect(page.get_by_test_id("wallet-stake-message")).to_have_text(f"Linked {SIGNER.address} as your stake address.")
    expect(page.get_by_test_id("wallet-stake-address")).to_have_text(SIGNER.address)
    link = WalletLink.objects.get(user=provider, revoked_at__isnull=True)
    assert (link.address, link.purpose, link.chain_id) == (SIGNER.address, "stake", 8453)
    calls = [call["method"] for call in wallet_calls(page)]
    assert calls == ["eth_requestAccounts", "eth_chainId", "personal_sign"]  # no transaction, no gas

    page.reload()  # the page itself lists it, with its history
    expect(page.get_by_test_id("wallet-stake-address")).to_have_text(SIGNER.address)
    expect(page.get_by_test_id("wallet-history-row")).to_have_count(1)


def test_a_rejected_signature_links_nothing_and_says_so(page: Page, provider):
    install_wallet(page, SIGNER.address, answers={"eth_chainId": "0x2105"}, reject=REJECT_THE_REST)
    log_in(page, provider.email, "/account/")
    page.goto("/account/wallets/")
    page.get_by_test_id("wallet-payout-button").click()
    expect(page.get_by_test_id("wallet-payout-message")).to_have_text(
        "You rejected the request in your wallet: nothing was linked."
    )
    assert not WalletLink.objects.exists()


def test_without_a_wallet_the_page_says_how_to_get_one(page: Page, provider):
    log_in(page, provider.email, "/account/")
    page.goto("/account/wallets/")
    page.get_by_test_id("wallet-stake-button").click()
    expect(page.get_by_test_id("wallet-stake-message")).to_contain_text("No browser wallet found")
