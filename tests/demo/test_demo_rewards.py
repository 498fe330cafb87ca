"""The Demo Provider's era rewards (demo.services._provider_rewards): after `seed_demo` its own nodes
have the last seven closed eras, each rewarded by providers.era_rewards from the outages and
liveness challenges the demo recorded, so a person who signs in as provider@spheron.test sees
receipts, earnings per day and rewards instead of empty pages. Nothing here depends on today's
date: the eras are counted back from the clock."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from spheron_sdk import rewards as sdk

from accounts.models import User
from billing.models import LedgerTransaction
from billing.selectors import ledger_total
from chain.models import Rate
from core import clock
from demo.services import DEMO_PROVIDER_NODE_NAMES, PROVIDER_EMAIL, demo_seed
from providers.models import (
    ChallengeStatus,
    EraOutcome,
    Node,
    NodeChallenge,
    NodeEra,
    NodeEvent,
    NodeOutage,
    NodeReward,
    ProviderProfile,
    RewardEra,
)
from providers.rewards import params_from_settings
from providers.uptime import ERA, last_era_end

pytestmark = pytest.mark.django_db

NODES = 20  # the six Demo Provider machines and a small market around them


def era_starts() -> list:
    """The last seven closed eras, oldest first."""
    latest_end = last_era_end(clock.now())
    return [latest_end - ERA * days for days in range(7, 0, -1)]


def eras_ago(start) -> int:
    return (last_era_end(clock.now()) - start) // ERA


def demo_profile() -> ProviderProfile:
    return ProviderProfile.objects.get(user__email=PROVIDER_EMAIL)


def what_the_demo_wrote() -> dict:
    return {
        "eras": sorted(NodeEra.objects.values_list("node__name", "started_at", "uptime", "outcome")),
        "outages": NodeOutage.objects.count(),
        "challenges": NodeChallenge.objects.count(),
        "events": NodeEvent.objects.count(),
        "rewards": sorted(NodeReward.objects.values_list("id", "node_id", "era_id", "points", "floor_topup_micros")),
        "reward_eras": sorted(RewardEra.objects.values_list("started_at", "runs", "changed", "nodes")),
        "rates": Rate.objects.count(),
        "ledger": LedgerTransaction.objects.count(),
    }


def test_the_demo_providers_nodes_have_seven_eras_of_rewards_whose_receipts_recompute():
    demo_seed(nodes=NODES, seed=1)
    profile = demo_profile()
    nodes = {node.name: node for node in Node.objects.filter(provider=profile)}
    assert sorted(nodes) == sorted(DEMO_PROVIDER_NODE_NAMES)
    rewards = list(NodeReward.objects.filter(provider=profile).select_related("era", "node"))

    starts = era_starts()
    assert len(rewards) == 6 * 7
    assert sorted({reward.era.started_at for reward in rewards}) == starts
    # Only the Demo Provider's nodes have eras: the market's other demo nodes are not rewarded.
    assert set(NodeEra.objects.values_list("node__provider_id", flat=True)) == {profile.id}
    emission = params_from_settings().era_emission_base_units
    for era in RewardEra.objects.filter(started_at__in=starts):
        assert era.runs == 1 and era.nodes == 6
        assert int(era.spon) == emission  # the era's emission, shared by points
        assert era.spon_usd_rate == Decimal("0.05")
    (rate,) = Rate.objects.filter(symbol="SPON")
    assert rate.source == "demo" and rate.usd_per_unit == Decimal("0.05")

    for reward in rewards:
        assert sdk.receipt_check(reward.receipt) == [], (reward.node.name, reward.era.started_at)
        recomputed = sdk.reward_recompute(reward.receipt)
        assert Decimal(recomputed["points"]) == reward.points
        assert reward.receipt["trust"]["tier"] == reward.node.trust_tier
        # The floor's fields: each node's floor for its online hours, and either why it has none or
        # what it wanted (nothing: six nodes sharing an era's emission earn far above any floor).
        assert reward.floor_micros > 0 and reward.online_seconds > 0
        assert reward.spon_usd_micros == int(Decimal(int(reward.spon)) * Decimal("0.05") * 10**6 / 10**18)
        if reward.floor_eligible:
            assert reward.floor_reason == "" and reward.floor_wanted_micros == 0 == reward.floor_topup_micros
        else:
            assert reward.floor_reason

    by_key = {(reward.node.name, eras_ago(reward.era.started_at)): reward for reward in rewards}
    forfeited = [reward for reward in rewards if reward.receipt["forfeit"]["forfeited"]]
    assert [(r.node.name, eras_ago(r.era.started_at)) for r in forfeited] == [("demo-rtx4090-eu-west", 3)]
    (lost,) = forfeited
    assert lost.points == 0 and int(lost.spon) == 0
    assert "1 failed liveness challenge" in lost.receipt["forfeit"]["reason"]
    assert lost.receipt["liveness"]["challenges"] and "rewards forfeited" in lost.floor_reason
    assert NodeChallenge.objects.filter(status=ChallengeStatus.FAILED).count() == 1
    assert NodeChallenge.objects.filter(status=ChallengeStatus.PASSED).count() > 6 * 7 * 3

    # Offline for 80 minutes: the era's uptime, a bad era for tier 1, and no floor below 95 %.
    h100 = by_key[("demo-h100x8-us-east", 5)]
    assert Decimal(h100.receipt["uptime"]["uptime"]) < Decimal("0.95")
    assert "below 95%" in h100.floor_reason
    era = NodeEra.objects.get(node=h100.node, started_at=h100.era.started_at)
    assert era.outcome == EraOutcome.BAD and era.uptime == pytest.approx(1 - 80 / 1440, abs=1e-6)
    assert era.tier_before == era.tier_after == h100.node.trust_tier
    # Back online within the era: its reconnect cool-down costs the floor that day.
    assert "cool-down" in by_key[("demo-l40sx2-ap-southeast", 2)].floor_reason
    # A maintenance window is excused: full uptime, floor kept.
    a100 = by_key[("demo-a100-80gx4-eu-central", 4)]
    assert Decimal(a100.receipt["uptime"]["uptime"]) == 1 and a100.floor_eligible
    assert a100.online_seconds == 86400 - 4 * 3600
    # A quiet day: eligible, the whole day online.
    quiet = by_key[("demo-m2-max-us-west", 1)]
    assert quiet.floor_eligible and quiet.online_seconds == 86400 and quiet.points > 0
    assert ledger_total() == 0


def test_seeding_again_adds_nothing_and_runs_no_era():
    demo_seed(nodes=NODES, seed=1)
    before = what_the_demo_wrote()

    result = demo_seed(nodes=NODES, seed=1)

    assert not result.created
    assert what_the_demo_wrote() == before


def test_a_database_seeded_before_the_rewards_gets_them_on_the_next_run(monkeypatch):
    with monkeypatch.context() as before_the_rewards:
        before_the_rewards.setattr("demo.services._provider_rewards", lambda: None)
        demo_seed(nodes=NODES, seed=1)
    assert not NodeReward.objects.exists()

    result = demo_seed(nodes=NODES, seed=1)  # already seeded: only the rewards are added

    assert not result.created
    assert NodeReward.objects.filter(provider=demo_profile()).count() == 6 * 7
    # The machines are dated back before their first era, so each era counts the whole day.
    first = era_starts()[0]
    assert not Node.objects.filter(provider=demo_profile(), created_at__gt=first).exists()


def test_a_replaced_market_takes_its_rewards_with_it_and_the_new_nodes_get_their_own():
    demo_seed(nodes=NODES, seed=1)
    old_nodes = set(Node.objects.filter(provider=demo_profile()).values_list("id", flat=True))

    result = demo_seed(nodes=NODES + 5, seed=2)

    assert result.created
    new_nodes = set(Node.objects.filter(provider=demo_profile()).values_list("id", flat=True))
    assert len(new_nodes) == 6 and not new_nodes & old_nodes
    assert set(NodeReward.objects.values_list("node_id", flat=True)) == new_nodes
    assert NodeReward.objects.count() == 6 * 7
    for era in RewardEra.objects.filter(started_at__in=era_starts()):
        assert era.nodes == 6 and era.runs == 3  # rewarded, emptied with the old nodes, rewarded again
    assert ledger_total() == 0

    demo_seed(nodes=0, seed=2)  # no demo market at all: no demo nodes, no rewards left behind
    assert not Node.objects.exists() and not NodeReward.objects.exists() and not NodeEra.objects.exists()


def test_a_later_day_adds_only_the_eras_since():
    demo_seed(nodes=NODES, seed=1)
    first_eras = set(RewardEra.objects.values_list("started_at", "runs"))
    two_days = timedelta(days=2)
    clock.advance(two_days.total_seconds())
    try:
        demo_seed(nodes=NODES, seed=1)
        starts = era_starts()
    finally:
        clock.reset()

    eras = set(RewardEra.objects.values_list("started_at", "runs"))
    assert first_eras < eras  # the first seed's eras untouched (not run again)
    assert {start for start, _runs in eras - first_eras} == set(starts[-2:])
    assert NodeReward.objects.count() == 6 * 9


ROW = re.compile(r'<tr data-testid="earnings-(row|totals)"([^>]*)>')
ATTR = re.compile(r'data-([a-z-]+)="([^"]*)"')


def test_the_demo_providers_pages_show_the_rewards():
    demo_seed(nodes=NODES, seed=1)
    client = Client()
    client.force_login(User.objects.get(email=PROVIDER_EMAIL))
    rewards = NodeReward.objects.filter(provider=demo_profile())

    response = client.get("/provider/earnings/?days=7")
    assert response.status_code == 200
    rows, totals = {}, {}
    for kind, attrs in ROW.findall(response.content.decode()):
        attrs = dict(ATTR.findall(attrs))
        if kind == "totals":
            totals = attrs
        else:
            rows[attrs["day"]] = attrs
    # Each era's rewards count on the day it ended: the last seven days, today included.
    today = last_era_end(clock.now()).date()
    for days in range(7):
        day = f"{today - timedelta(days=days):%Y-%m-%d}"
        assert int(rows[day]["spon"]) > 0 and int(rows[day]["spon-usd"]) > 0, day
    assert int(totals["spon"]) == sum(int(reward.spon) for reward in rewards)
    assert int(totals["spon-usd"]) == sum(reward.spon_usd_micros for reward in rewards)

    node = Node.objects.get(provider=demo_profile(), name="demo-rtx4090-eu-west")
    response = client.get(f"/provider/nodes/{node.id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('data-testid="reward-row"') == 7
    assert html.count('data-testid="receipt-match"') == 7 and 'data-testid="receipt-mismatch"' not in html
    assert "the era's rewards are forfeited: 1 failed liveness challenge" in html
    failed = NodeChallenge.objects.get(node=node, status=ChallengeStatus.FAILED)
    assert failed.public_id in html  # the challenge behind the forfeit, named in its receipt

    response = client.get("/provider/rewards/")
    assert response.status_code == 200
    assert response.content.decode().count('data-testid="rewards-era"') == 7
