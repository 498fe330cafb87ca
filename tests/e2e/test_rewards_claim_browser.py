"""A provider claims $SPON rewards from /provider/rewards/ with the Claim button: Chromium, an
injected EIP-1193 wallet backed by anvil, RewardDistributor deployed there and funded, and a rewards
tree the app built and set on chain through chain.sender (as the era close and beat do).

Replaced at the boundary: the wallet (`window.ethereum` answers eth_requestAccounts with the account
given and forwards everything else to anvil, where dev accounts are unlocked, so eth_sendTransaction
is signed there) and beat (the tree's pass and the sender are called here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from chain.evm.anvil import DEV_ACCOUNTS
from chain.sender import transactions_run
from providers.models import NodeReward, RewardEra, RewardTreeStatus
from providers.reward_claims import rewards_tree_build, rewards_trees_run
from tests.chain_fixtures import stake_link
from tests.e2e.login import log_in, verified_user
from tests.e2e.wallet import install_wallet, sent_transactions, wallet_calls
from tests.factories import make_node, make_provider

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("live_sqlite_reads"),
]
SPON = 10**18
STAKER = DEV_ACCOUNTS[3]  # the provider's stake wallet (unlocked on anvil)
OTHER = DEV_ACCOUNTS[5]  # an account of the wallet that is not the stake address


@pytest.fixture
def home(home_chain):
    """Base on anvil: RewardDistributor funded, the root setter's key (the deployer's) in the environment."""
    return home_chain(rewards=True)


@pytest.fixture
def provider(home):
    """A provider whose stake address is STAKER, with 5 + 7 $SPON over two eras in a published tree
    (with another provider's 1 $SPON)."""
    user = verified_user("grace@example.test", name="Grace", is_provider=True)
    profile = make_provider(user=user)
    stake_link(user, STAKER.address)
    node = make_node(provider=profile)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    for day, spon in ((0, 5), (1, 7)):
        era = RewardEra.objects.create(
            started_at=start + timedelta(days=day), ended_at=start + timedelta(days=day + 1), emission=100 * SPON
        )
        NodeReward.objects.create(era=era, node=node, provider=profile, receipt={}, points=1, spon=spon * SPON)
    # Another provider in the tree, so the proof is not empty.
    other = make_provider()
    stake_link(other.user, DEV_ACCOUNTS[4].address)
    NodeReward.objects.create(era=era, node=make_node(provider=other), provider=other, receipt={}, points=1, spon=SPON)
    tree = rewards_tree_build(era=era)
    rewards_trees_run()
    transactions_run()  # sends setRoot
    transactions_run()  # reads its receipt
    rewards_trees_run()
    tree.refresh_from_db()
    assert tree.status == RewardTreeStatus.PUBLISHED
    return user


def test_the_claim_button_claims_the_cumulative_rewards_from_the_stake_wallet(page: Page, home, provider):
    distributor, token = home.contract("RewardDistributor"), home.contract("SponToken")
    before = token.functions.balanceOf(STAKER.address).call()
    install_wallet(page, STAKER.address, rpc=home.url)
    log_in(page, provider.email, "/account/")
    page.goto("/provider/rewards/")
    expect(page.get_by_test_id("rewards-claimable")).to_contain_text("12")
    expect(page.get_by_test_id("rewards-address")).to_have_text(STAKER.address)
    expect(page.get_by_test_id("rewards-proof")).to_contain_text("The proof (1 hash)")

    page.get_by_test_id("rewards-claim-button").click()

    expect(page.get_by_test_id("rewards-message")).to_contain_text("Claimed (0x", timeout=30_000)
    assert token.functions.balanceOf(STAKER.address).call() - before == 12 * SPON
    assert distributor.functions.claimed(STAKER.address).call() == 12 * SPON
    [sent] = sent_transactions(page)
    assert sent["from"] == STAKER.address
    assert sent["to"] == distributor.address

    page.reload()  # claimed: nothing left, and no button
    expect(page.get_by_test_id("rewards-nothing")).to_contain_text("Nothing to claim")
    expect(page.get_by_test_id("rewards-claim-button")).to_have_count(0)
    expect(page.get_by_test_id("rewards-claimed")).to_have_text("12")


def test_a_wallet_on_another_account_is_told_to_switch_and_nothing_is_sent(page: Page, home, provider):
    install_wallet(page, OTHER.address, rpc=home.url)
    log_in(page, provider.email, "/account/")
    page.goto("/provider/rewards/")

    page.get_by_test_id("rewards-claim-button").click()

    expect(page.get_by_test_id("rewards-message")).to_have_text(
        f"Your wallet's account is not your stake address {STAKER.address}: "
        "switch to that account in your wallet and try again."
    )
    assert [call["method"] for call in wallet_calls(page)] == ["eth_requestAccounts"]
    assert home.contract("RewardDistributor").functions.claimed(STAKER.address).call() == 0
