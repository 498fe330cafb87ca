"""Claims of era rewards (providers.reward_claims, issue 22 part 5) without a chain: addresses given
once, the cumulative tree built idempotently, the root's pass waiting or superseding, its
reconciliation from the sender's row, the provider's API and page, and the published JSON.
(On anvil, with real claims: tests/chain/test_reward_claims_anvil.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from spheron_sdk import rewards_tree
from spheron_sdk.rewards_tree import RewardsTree

from accounts.models import WalletLink
from chain.models import Chain, ChainKind, ChainTransaction, TxStatus
from providers.models import NodeReward, RewardEra, RewardTree, RewardTreeStatus
from providers.reward_claims import (
    provider_rewards,
    rewards_tree_build,
    rewards_trees_reconcile,
    rewards_trees_run,
    set_root_calldata,
    tree_era_number,
)
from tests.factories import make_node, make_provider, make_user

pytestmark = pytest.mark.django_db

SPON = 10**18
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20
DAY0 = datetime(2025, 3, 1, tzinfo=UTC)


def checksum(address: str) -> str:
    return rewards_tree.checksum_address(address)


def link(provider, address: str) -> WalletLink:
    """The provider's current stake address (revoking the previous one, as accounts.wallets does)."""
    now = timezone.now()
    WalletLink.objects.filter(user=provider.user, purpose="stake", revoked_at__isnull=True).update(revoked_at=now)
    return WalletLink.objects.create(
        user=provider.user, address=checksum(address), purpose="stake", chain_id=8453, message="signed",
        signature="0x" + "00" * 65, linked_at=now,
    )  # fmt: skip


def era(day: int) -> RewardEra:
    start = DAY0 + timedelta(days=day)
    return RewardEra.objects.create(started_at=start, ended_at=start + timedelta(days=1), emission=100_000 * SPON)


def reward(era_row: RewardEra, node, spon: int, *, usd_micros: int = 0) -> NodeReward:
    return NodeReward.objects.create(
        era=era_row, node=node, provider=node.provider, receipt={"points": "1"}, points=1, spon=spon,
        spon_usd_micros=usd_micros,
    )  # fmt: skip


@pytest.fixture
def alice():
    provider = make_provider()
    link(provider, ALICE)
    return provider, make_node(provider=provider)


@pytest.fixture
def bob():
    provider = make_provider()
    link(provider, BOB)
    return provider, make_node(provider=provider)


def amounts(tree: RewardTree) -> dict[str, int]:
    return RewardsTree.load(tree.dump).amounts()


# --- Building --------------------------------------------------------------------------------------


def test_a_build_assigns_the_stake_address_and_the_tree_holds_each_addresses_sum(alice, bob):
    first = era(0)
    reward(first, alice[1], 5 * SPON)
    reward(first, make_node(provider=alice[0]), 2 * SPON)
    reward(first, bob[1], 3 * SPON)

    tree = rewards_tree_build(era=first)

    assert tree is not None and tree.status == RewardTreeStatus.BUILT and tree.era == first
    assert amounts(tree) == {checksum(ALICE): 7 * SPON, checksum(BOB): 3 * SPON}
    assert int(tree.total) == 10 * SPON
    assert set(NodeReward.objects.values_list("address", flat=True)) == {checksum(ALICE), checksum(BOB)}
    loaded = RewardsTree.load(tree.dump)
    assert loaded.root == tree.root
    assert rewards_tree.verify(tree.root, checksum(ALICE), 7 * SPON, loaded.proof(ALICE))


def test_building_twice_creates_nothing(alice):
    first = era(0)
    reward(first, alice[1], 5 * SPON)
    tree = rewards_tree_build(era=first)

    again = rewards_tree_build(era=first)

    assert again == tree
    assert RewardTree.objects.count() == 1


def test_the_cumulative_amount_grows_with_each_era(alice, bob):
    first, second = era(0), era(1)
    reward(first, alice[1], 5 * SPON)
    tree1 = rewards_tree_build(era=first)
    reward(second, alice[1], 3 * SPON)
    reward(second, bob[1], 4 * SPON)

    tree2 = rewards_tree_build(era=second)

    assert tree2.id != tree1.id and tree2.root != tree1.root
    assert amounts(tree1) == {checksum(ALICE): 5 * SPON}
    assert amounts(tree2) == {checksum(ALICE): 8 * SPON, checksum(BOB): 4 * SPON}


def test_an_address_once_assigned_never_changes_a_new_link_gets_the_later_eras(alice):
    provider, node = alice
    first, second = era(0), era(1)
    old = reward(first, node, 5 * SPON)
    rewards_tree_build(era=first)
    link(provider, CAROL)
    new = reward(second, node, 3 * SPON)

    tree = rewards_tree_build(era=second)

    old.refresh_from_db()
    new.refresh_from_db()
    assert old.address == checksum(ALICE)
    assert new.address == checksum(CAROL)
    assert amounts(tree) == {checksum(ALICE): 5 * SPON, checksum(CAROL): 3 * SPON}


def test_no_stake_address_no_tree_and_the_rewards_wait_for_one():
    provider = make_provider()
    node = make_node(provider=provider)
    first, second = era(0), era(1)
    waiting = reward(first, node, 5 * SPON)

    assert rewards_tree_build(era=first) is None
    assert not RewardTree.objects.exists()
    waiting.refresh_from_db()
    assert waiting.address == ""

    link(provider, ALICE)
    reward(second, node, 1 * SPON)
    tree = rewards_tree_build(era=second)

    assert amounts(tree) == {checksum(ALICE): 6 * SPON}


def test_a_reward_of_no_spon_gets_no_address(alice):
    first = era(0)
    nothing = reward(first, alice[1], 0)

    assert rewards_tree_build(era=first) is None
    nothing.refresh_from_db()
    assert nothing.address == ""


def test_a_failed_tree_rebuilt_under_the_same_root_is_built_again(alice):
    first = era(0)
    reward(first, alice[1], 5 * SPON)
    tree = rewards_tree_build(era=first)
    RewardTree.objects.filter(id=tree.id).update(status=RewardTreeStatus.FAILED, failure_reason="setRoot: reverted")

    again = rewards_tree_build(era=first)

    assert again.id == tree.id and again.status == RewardTreeStatus.BUILT and again.failure_reason == ""
    assert RewardTree.objects.count() == 1


def test_the_era_number_is_the_day_of_the_newest_eras_end(alice):
    first, second = era(0), era(1)
    reward(first, alice[1], 5 * SPON)
    reward(second, alice[1], 5 * SPON)
    tree = rewards_tree_build(era=first)  # an admin's re-run of the older era: the tree holds both

    assert tree_era_number(tree) == (second.ended_at - datetime(1970, 1, 1, tzinfo=UTC)).days


# --- The root's pass -------------------------------------------------------------------------------


@pytest.fixture
def home(settings):
    """The home chain's row with no RPC URL: nothing here reaches a node."""
    settings.STAKING_CHAIN_KEY = "base"
    settings.CHAIN_RPC_URLS = {**settings.CHAIN_RPC_URLS, "base": ""}
    settings.REWARD_DISTRIBUTOR_ADDRESS = "0x" + "d1" * 20
    return Chain.objects.update_or_create(
        key="base",
        defaults={
            "chain_id": 8453,
            "name": "Base",
            "kind": ChainKind.EVM,
            "native_symbol": "ETH",
            "native_decimals": 18,
            "finality": 3,
            "block_time_ms": 1000,
            "enabled": True,
            "rpc_url": "",
        },  # fmt: skip
    )[0]


def test_without_the_root_setters_key_a_built_tree_waits(alice, home, monkeypatch, settings):
    settings.REWARD_ROOT_KEY_ENV = "CHAIN_TEST_ROOT_KEY"
    monkeypatch.delenv("CHAIN_TEST_ROOT_KEY", raising=False)
    first = era(0)
    reward(first, alice[1], 5 * SPON)
    tree = rewards_tree_build(era=first)

    result = rewards_trees_run()

    assert result["waiting"] == "CHAIN_TEST_ROOT_KEY is not set"
    tree.refresh_from_db()
    assert tree.status == RewardTreeStatus.BUILT and tree.chain_tx is None
    assert not ChainTransaction.objects.exists()


def test_without_the_home_chain_a_built_tree_waits(alice, monkeypatch, settings):
    settings.DEBUG = True  # anvil's public key is refused otherwise
    settings.REWARD_ROOT_KEY_ENV = "CHAIN_TEST_ROOT_KEY"
    monkeypatch.setenv("CHAIN_TEST_ROOT_KEY", "0x" + "11" * 32)
    first = era(0)
    reward(first, alice[1], 5 * SPON)
    rewards_tree_build(era=first)

    result = rewards_trees_run()

    assert "no enabled chain row" in result["waiting"]
    assert RewardTree.objects.get().status == RewardTreeStatus.BUILT


def test_an_older_built_tree_is_superseded_by_the_newest(alice):
    first, second = era(0), era(1)
    reward(first, alice[1], 5 * SPON)
    older = rewards_tree_build(era=first)
    reward(second, alice[1], 1 * SPON)
    newer = rewards_tree_build(era=second)

    result = rewards_trees_run()

    older.refresh_from_db()
    newer.refresh_from_db()
    assert result["superseded"] == 1
    assert older.status == RewardTreeStatus.FAILED and f"superseded by tree {newer.id}" in older.failure_reason
    assert newer.status == RewardTreeStatus.BUILT


def _sending(tree: RewardTree, chain: Chain, status: str, **fields) -> ChainTransaction:
    tx = ChainTransaction.objects.create(
        chain=chain, purpose="reward-root", reference=f"reward-root:{tree.id}", key_env="K", sender="0x" + "0" * 40,
        to="0x" + "d1" * 20, data=set_root_calldata(root=tree.root, era_number=20150), status=status,
        tx_hash="0x" + "ab" * 32, **fields,
    )  # fmt: skip
    RewardTree.objects.filter(id=tree.id).update(status=RewardTreeStatus.SENDING, chain_tx=tx)
    return tx


def test_a_mined_set_root_publishes_the_tree_and_a_reverted_one_fails_it(alice, home):
    first, second = era(0), era(1)
    reward(first, alice[1], 5 * SPON)
    mined = rewards_tree_build(era=first)
    _sending(mined, home, TxStatus.MINED)

    result = rewards_trees_reconcile()

    mined.refresh_from_db()
    assert result.published == 1
    assert mined.status == RewardTreeStatus.PUBLISHED and mined.published_at is not None

    reward(second, alice[1], 1 * SPON)
    reverted = rewards_tree_build(era=second)
    tx = _sending(reverted, home, TxStatus.FAILED, revert_reason="EraBeforeCurrent(20160, 20150)")
    assert tx.reference == f"reward-root:{reverted.id}"
    rewards_trees_reconcile()
    reverted.refresh_from_db()
    assert reverted.status == RewardTreeStatus.FAILED
    assert reverted.failure_reason == "setRoot: EraBeforeCurrent(20160, 20150)"


# --- Reads: the API, the page, the published JSON --------------------------------------------------


@pytest.fixture
def published(alice, bob, home):
    """Two eras: Alice 5 + 3 $SPON, Bob 4; the second era's tree published (as if its setRoot mined)."""
    first, second = era(0), era(1)
    reward(first, alice[1], 5 * SPON, usd_micros=250_000)
    rewards_tree_build(era=first)
    reward(second, alice[1], 3 * SPON, usd_micros=150_000)
    reward(second, bob[1], 4 * SPON)
    tree = rewards_tree_build(era=second)
    _sending(tree, home, TxStatus.MINED)
    rewards_trees_reconcile()
    tree.refresh_from_db()
    return tree


def test_the_api_gives_eras_receipts_and_the_proof_of_the_published_tree(published, alice, client):
    provider, node = alice
    client.force_login(provider.user)

    response = client.get("/api/v1/provider/rewards")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["address"] == checksum(ALICE)
    assert body["tree"]["root"] == published.root
    assert body["tree"]["onchain_era"] == 20150
    assert body["tree"]["url"].endswith(f"/rewards/trees/{published.root}.json")
    assert body["cumulative"] == str(8 * SPON)
    assert rewards_tree.verify(published.root, checksum(ALICE), 8 * SPON, body["proof"])
    # No RPC for the home chain here: what was claimed cannot be read, and the answer says so.
    assert body["claimed"] is None and body["claimable"] is None
    assert "claimed" in body["note"]
    assert body["earned"] == str(8 * SPON)
    assert body["era_count"] == 2
    assert [era["spon"] for era in body["eras"]] == [str(3 * SPON), str(5 * SPON)]  # newest first
    assert body["eras"][0]["spon_usd"] == "0.150000"
    [receipt] = body["eras"][0]["receipts"]
    assert receipt["node_id"] == node.id and receipt["receipt"] == {"points": "1"}
    assert receipt["address"] == checksum(ALICE)

    paged = client.get("/api/v1/provider/rewards?limit=1&offset=1").json()
    assert [era["spon"] for era in paged["eras"]] == [str(5 * SPON)]
    assert paged["limit"] == 1 and paged["offset"] == 1


def test_the_api_refuses_a_bad_limit_an_outsider_and_the_anonymous(published, client):
    outsider = make_user(email="outsider@example.test")
    assert client.get("/api/v1/provider/rewards").status_code == 401

    client.force_login(outsider)
    response = client.get("/api/v1/provider/rewards")
    assert response.status_code == 403
    assert response.json()["message"] == "Become a provider first."

    provider = make_provider()
    client.force_login(provider.user)
    for query in ("limit=0", "limit=1000", "offset=-1", "limit=ten"):
        bad = client.get(f"/api/v1/provider/rewards?{query}")
        assert bad.status_code == 422, query
        assert bad.json()["message"].startswith("Invalid input.")


def test_a_provider_with_nothing_yet_gets_empty_figures(client):
    provider = make_provider()
    client.force_login(provider.user)

    body = client.get("/api/v1/provider/rewards").json()

    assert body["address"] == "" and body["tree"] is None and body["eras"] == []
    assert body["cumulative"] == "0" and body["proof"] == [] and body["claimed"] is None


def test_the_published_tree_is_public_json_that_rebuilds_the_root(published):
    client = Client()

    latest = client.get("/rewards/tree.json")
    by_root = client.get(f"/rewards/trees/{published.root}.json")

    assert latest.status_code == by_root.status_code == 200
    assert latest.json() == by_root.json()
    document = latest.json()
    assert document["root"] == published.root and document["format"] == "standard-v1"
    assert document["era"]["onchain_era"] == 20150
    rebuilt = RewardsTree.build({address: amount for address, amount in RewardsTree.load(document).amounts().items()})
    assert rebuilt.root == published.root
    assert RewardsTree.load(document).amounts() == {checksum(ALICE): 8 * SPON, checksum(BOB): 4 * SPON}


def test_no_published_tree_and_an_unknown_root_are_404_json():
    client = Client()

    none = client.get("/rewards/tree.json")
    unknown = client.get(f"/rewards/trees/0x{'ee' * 32}.json")
    malformed = client.get("/rewards/trees/not-a-root.json")

    for response in (none, unknown, malformed):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
    assert none.json()["message"].startswith("No rewards tree has been published yet")
    assert "No published rewards tree has the root" in unknown.json()["message"]


def test_a_built_tree_not_yet_on_chain_is_not_served(alice):
    first = era(0)
    reward(first, alice[1], 5 * SPON)
    tree = rewards_tree_build(era=first)

    assert Client().get(f"/rewards/trees/{tree.root}.json").status_code == 404


def test_the_page_shows_the_claim_and_the_proof(published, alice, client):
    client.force_login(alice[0].user)

    response = client.get("/provider/rewards/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="rewards-cumulative">8 <small>' in html
    assert checksum(ALICE) in html
    assert 'data-testid="rewards-proof"' in html
    assert 'data-testid="rewards-claim-button"' in html  # claimed unknown: the contract decides
    assert published.root in html


def test_the_page_says_when_there_is_no_stake_address_or_no_tree(client):
    provider = make_provider()
    client.force_login(provider.user)
    html = client.get("/provider/rewards/").content.decode()
    assert 'data-testid="rewards-no-address"' in html
    assert 'data-testid="rewards-claim-button"' not in html

    link(provider, ALICE)
    html = client.get("/provider/rewards/").content.decode()
    assert 'data-testid="rewards-no-tree"' in html
    assert 'data-testid="rewards-claim-button"' not in html


def test_the_page_needs_a_login_and_a_provider(client):
    assert client.get("/provider/rewards/").status_code == 302
    client.force_login(make_user(email="outsider@example.test"))
    response = client.get("/provider/rewards/")
    assert response.status_code == 302 and response["Location"].endswith("/provider/onboarding/")


def test_provider_rewards_of_an_earlier_address_lists_it(published, alice):
    provider, node = alice
    link(provider, CAROL)

    data = provider_rewards(provider)

    assert data["address"] == checksum(CAROL)
    assert data["cumulative"] == 0 and data["proof"] == []
    assert data["other_addresses"] == [checksum(ALICE)]
