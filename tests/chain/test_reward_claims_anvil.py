"""Reward claims end to end on anvil (issue 22 part 5's "Show"): two eras of rewards → the
cumulative tree built and its root set on RewardDistributor by the root setter through the real
chain.sender → the provider claims with the proof the app gives; a later era's tree → a second claim
pays only the difference; a claim of the same amount again reverts (NothingToClaim)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from web3 import Web3

from chain.evm.anvil import DEV_ACCOUNTS
from chain.models import Chain, ChainTransaction, TxStatus
from chain.sender import transactions_run
from providers.models import NodeReward, RewardEra, RewardTree, RewardTreeStatus
from providers.reward_claims import claim_calldata, provider_rewards, rewards_tree_build, rewards_trees_run
from tests.chain_fixtures import REWARD_POOL, ROOT_SETTER_KEY_ENV, TREASURY, stake_link
from tests.contracts.helpers import assert_reverts, call, error_data, send
from tests.factories import make_node, make_provider

pytestmark = pytest.mark.django_db

SPON = 10**18
ALICE, BOB = DEV_ACCOUNTS[3], DEV_ACCOUNTS[4]  # the providers' stake wallets (unlocked on anvil)
DAY0 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture
def home(home_chain):
    """Base on anvil with the contracts and its row, RewardDistributor funded by the treasury and the
    root setter's key (the deployer holds ROOT_SETTER_ROLE) in the environment."""
    return home_chain(rewards=True)


def _provider(account):
    provider = make_provider()
    stake_link(provider.user, account.address)
    return provider, make_node(provider=provider)


def _era(day: int) -> RewardEra:
    start = DAY0 + timedelta(days=day)
    return RewardEra.objects.create(started_at=start, ended_at=start + timedelta(days=1), emission=100_000 * SPON)


def _reward(era: RewardEra, node, spon: int) -> None:
    NodeReward.objects.create(era=era, node=node, provider=node.provider, receipt={}, points=1, spon=spon)


def _publish(era: RewardEra) -> RewardTree:
    """What the era close and beat do: build the tree, record setRoot, the sender sends it and reads
    its receipt, the next pass marks the tree published."""
    tree = rewards_tree_build(era=era)
    assert rewards_trees_run()["recorded"] == tree.id
    transactions_run()  # sends
    transactions_run()  # reconciles (anvil mines each transaction at once)
    result = rewards_trees_run()
    assert result["published"] == 1, result
    tree.refresh_from_db()
    assert tree.status == RewardTreeStatus.PUBLISHED
    return tree


def _balance(node, account) -> int:
    return node.contract("SponToken").functions.balanceOf(account.address).call()


def test_two_eras_claimed_with_the_proof_then_a_later_era_pays_only_the_difference(home):
    node = home
    distributor = node.contract("RewardDistributor")
    alice, alice_node = _provider(ALICE)
    _bob, bob_node = _provider(BOB)
    first, second, third = _era(0), _era(1), _era(2)
    _reward(first, alice_node, 5 * SPON)
    _reward(second, alice_node, 2 * SPON)
    _reward(second, bob_node, 4 * SPON)

    tree = _publish(second)

    assert "0x" + distributor.functions.merkleRoot().call().hex() == tree.root
    assert distributor.functions.era().call() == (second.ended_at - datetime(1970, 1, 1, tzinfo=UTC)).days
    tx = ChainTransaction.objects.get(purpose="reward-root", reference=f"reward-root:{tree.id}")
    assert tx.status == TxStatus.MINED and tree.chain_tx_id == tx.id
    data = provider_rewards(alice)
    assert (data["cumulative"], data["claimed"], data["claimable"]) == (7 * SPON, 0, 7 * SPON)

    before = _balance(node, ALICE)
    call(node.w3, ALICE, distributor.functions.claim(ALICE.address, data["cumulative"], data["proof"]))

    assert _balance(node, ALICE) - before == 7 * SPON
    data = provider_rewards(alice)
    assert (data["claimed"], data["claimable"]) == (7 * SPON, 0)
    page = Client()
    page.force_login(alice.user)
    assert 'data-testid="rewards-nothing"' in page.get("/provider/rewards/").content.decode()
    # The same claim again: nothing is due.
    nothing = error_data(
        "NothingToClaim(address,uint256,uint256)",
        ("address", "uint256", "uint256"),
        (ALICE.address, 7 * SPON, 7 * SPON),
    )
    calldata = claim_calldata(address=ALICE.address, cumulative=7 * SPON, proof=data["proof"])
    again = {"to": distributor.address, "data": calldata, "value": 0}
    assert_reverts(node.w3, ALICE, again, nothing)

    # A later era: the new tree replaces the old on chain; the claim (the page's calldata) pays 3 more.
    _reward(third, alice_node, 3 * SPON)
    later = _publish(third)
    assert later.era_id == third.id
    assert distributor.functions.era().call() == (third.ended_at - datetime(1970, 1, 1, tzinfo=UTC)).days
    data = provider_rewards(alice)
    assert (data["cumulative"], data["claimed"], data["claimable"]) == (10 * SPON, 7 * SPON, 3 * SPON)

    before = _balance(node, ALICE)
    calldata = claim_calldata(address=data["address"], cumulative=data["cumulative"], proof=data["proof"])
    receipt = send(node.w3, ALICE, {"to": distributor.address, "data": calldata, "value": 0})

    assert receipt["status"] == 1
    assert _balance(node, ALICE) - before == 3 * SPON
    assert distributor.functions.claimed(ALICE.address).call() == 10 * SPON
    # Bob never claimed: the later tree still owes him his 4 $SPON, and anyone may submit his claim.
    bob = provider_rewards(_bob)
    assert bob["claimable"] == 4 * SPON
    call(node.w3, ALICE, distributor.functions.claim(BOB.address, bob["cumulative"], bob["proof"]))
    assert distributor.functions.claimed(BOB.address).call() == 4 * SPON
    assert node.contract("SponToken").functions.balanceOf(distributor.address).call() == REWARD_POOL - 14 * SPON


def test_a_set_root_that_reverts_fails_the_tree_with_the_reason(home, monkeypatch):
    """A key without ROOT_SETTER_ROLE: the estimate reverts, the sender fails the transaction and the
    next pass fails the tree with the contract's reason."""
    monkeypatch.setenv(ROOT_SETTER_KEY_ENV, DEV_ACCOUNTS[6].private_key)
    _alice, alice_node = _provider(ALICE)
    first = _era(0)
    _reward(first, alice_node, 5 * SPON)
    tree = rewards_tree_build(era=first)
    rewards_trees_run()

    transactions_run()
    result = rewards_trees_run()

    tree.refresh_from_db()
    assert result["failed"] == 1
    assert tree.status == RewardTreeStatus.FAILED
    assert tree.failure_reason.startswith("setRoot: AccessControlUnauthorizedAccount(")
    role = Web3.keccak(text="ROOT_SETTER_ROLE").hex()
    assert role.removeprefix("0x") in tree.failure_reason
    assert Chain.objects.get(key="base").enabled


def test_the_devnet_funds_the_distributor_from_the_treasury_once(anvil):
    from chain import devnet

    node = anvil(chain_id=8453, deploy=True)
    token = node.contract("SponToken")
    distributor = node.contracts["RewardDistributor"]
    treasury_before = token.functions.balanceOf(TREASURY.address).call()

    devnet._fund_demo_payer(node.w3, node.contracts, spon=True)

    assert token.functions.balanceOf(distributor).call() == devnet.REWARD_DISTRIBUTOR_SPON
    spent = treasury_before - token.functions.balanceOf(TREASURY.address).call()
    assert spent == devnet.REWARD_DISTRIBUTOR_SPON + devnet.DEMO_SPON + devnet.PAYOUT_WALLET_SPON
    # A restart that kept its state: nothing is sent again.
    devnet._fund_demo_payer(node.w3, node.contracts, spon=True)
    assert token.functions.balanceOf(distributor).call() == devnet.REWARD_DISTRIBUTOR_SPON
    assert treasury_before - token.functions.balanceOf(TREASURY.address).call() == spent
