"""A node's era rewards on its page and in the API (issue 22, part 2): one row per era, each receipt
explained term by term (base, uptime with its outages, liveness with the challenges behind the
shortfall, trust, utilization with its leases, forfeit, points, $SPON), recomputed from the receipt
alone by spheron_sdk.rewards and shown to match; the receipt JSON; another provider's node is a 404.

The eras are built here with the server's own code (providers.rewards.era_receipts), not by
providers.era_rewards, so these tests pin what the page shows for a known receipt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from spheron_sdk import rewards as sdk

from core import clock
from providers.models import NodeReward, RewardEra
from providers.rewards import ChallengeInput, LeaseSpan, NodeEraInputs, era_receipts, params_from_settings
from tests.factories import make_node, make_provider

SPON = 10**18


def era_start_days_ago(days: int) -> datetime:
    """00:00 UTC `days` days before today (the tests never depend on the date itself)."""
    today = clock.now().astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=days), datetime.min.time(), tzinfo=UTC)


def make_era(
    inputs: list[NodeEraInputs],
    *,
    start: datetime,
    rate: Decimal | None = Decimal("0.5"),
    rental: dict[int, int] | None = None,
    topups: dict[int, int] | None = None,
) -> RewardEra:
    """A RewardEra and its NodeRewards from real receipts (era_receipts), valued at `rate`."""
    from providers.models import Node

    params = params_from_settings()
    end = start + timedelta(days=1)
    receipts = era_receipts(inputs, params, era=(start, end))
    era = RewardEra.objects.create(
        started_at=start,
        ended_at=end,
        emission=params.era_emission_base_units,
        spon_usd_rate=rate,
        nodes=len(receipts),
        points=sum(Decimal(r["points"]) for r in receipts),
        spon=sum(int(r["spon"]["amount"]) for r in receipts),
        runs=1,
        computed_at=end,
    )
    nodes = {n.id: n for n in Node.objects.filter(id__in=[r["node_id"] for r in receipts])}
    for receipt in receipts:
        node = nodes[receipt["node_id"]]
        amount = int(receipt["spon"]["amount"])
        topup = (topups or {}).get(node.id, 0)
        NodeReward.objects.create(
            era=era,
            node=node,
            provider=node.provider,
            receipt=receipt,
            points=Decimal(receipt["points"]),
            spon=amount,
            spon_usd_micros=int(Decimal(amount) * (rate or 0) * 10**6 / SPON),
            online_seconds=int(Decimal(receipt["uptime"]["online_seconds"])),
            rental_micros=(rental or {}).get(node.id, 0),
            floor_eligible=bool(topup),
            floor_micros=topup,
            floor_wanted_micros=topup,
            floor_topup_micros=topup,
        )
    return era


def full_inputs(node, start: datetime) -> NodeEraInputs:
    """One RTX 4090 (medium-1, ×1.0) in trust tier 4 (×1.2): a one-hour outage, one failed
    challenge short of 0.5 of its GPU among 4 (3 passed), leased 12 hours."""
    return NodeEraInputs(
        node_id=node.id,
        window=(start, start + timedelta(days=1)),
        unit_kind="gpu",
        unit_count=1,
        tier="medium-1",
        trust_tier=4,
        outages=[(start + timedelta(hours=2), start + timedelta(hours=3))],
        challenges=[
            ChallengeInput(
                id="ch-failed-1",
                at=start + timedelta(hours=5),
                status="failed",
                shortfall={"cpu": Decimal(0), "ram": Decimal(0), "storage": Decimal(0), "gpu": Decimal("0.5")},
            )
        ],
        challenges_passed=3,
        leases=[LeaseSpan(id=41, start=start + timedelta(hours=6), end=start + timedelta(hours=18), units=1)],
    )


@pytest.fixture
def owner_client(provider):
    client = Client()
    client.force_login(provider.user)
    return client


@pytest.fixture
def rewarded(provider):
    """The provider's node with two eras of rewards; another provider's node shares the eras."""
    node = make_node(provider=provider, name="box-one")
    other = make_node(provider=make_provider(), name="not-yours")
    eras = []
    for days in (3, 2):
        start = era_start_days_ago(days)
        eras.append(
            make_era(
                [full_inputs(node, start), full_inputs(other, start)],
                start=start,
                rental={node.id: 2_100_000},
                topups={node.id: 350_000} if days == 2 else None,
            )
        )
    return node, other, eras


def test_the_node_page_lists_each_era_and_explains_the_receipt_term_by_term(owner_client, rewarded):
    node, _other, eras = rewarded
    html = owner_client.get(f"/provider/nodes/{node.id}/").content.decode()
    section = html.split('data-testid="node-rewards"', 1)[1]
    # Newest era first, both there.
    first, second = (f"{era.started_at:%Y-%m-%d}" for era in reversed(eras))
    assert section.index(f'data-era="{first}"') < section.index(f'data-era="{second}"')
    assert section.count('data-testid="reward-row"') == 2
    reward = NodeReward.objects.get(node=node, era=eras[1])
    # The figures, by hand: base 1 × 1.0 × 500 = 500; uptime 23/24 = 0.958333 ≥ 0.5 → 1;
    # liveness 0.5 × 0.6 / 4 = 0.075 → 0.925; trust 1.2; utilization 12 h / 23 h online
    # (the outage is outside the lease) = 0.521739 → 1 + 0.5 × 0.521739 = 1.2608695;
    # points = 500 × 0.925 × 1.2 × 1.2608695 = 699.782572 (truncated).
    assert reward.points == Decimal("699.782572")
    assert "1 GPU (medium-1) × 1 × 500 = 500" in section
    assert "ch-failed-1" in section  # the challenge behind the shortfall
    assert "02:00:00 – 03:00:00 UTC (3600 s)" in section  # the outage behind the uptime
    assert "Counted 86400 s, down 3600 s, online 82800 s" in section
    assert "<strong>0.958333</strong>" in section
    assert "= <strong>0.075</strong>" in section and "= <strong>0.925</strong>" in section
    assert "tier 4 during the era → <strong>1.2</strong>" in section
    assert "lease 41: 1 unit" in section
    assert "leased share <strong>0.521739</strong>" in section
    assert "<strong>1.2608695</strong>" in section
    assert "truncated to 6 decimals = <strong>699.782572</strong>" in section
    # $SPON: the two nodes have the same points, so each gets half of the emission.
    emission = eras[1].emission
    assert int(reward.spon) == emission // 2
    assert f"{sdk.plain(Decimal(emission) / 2 / SPON)} $SPON" in section.replace(",", "")
    assert section.count('data-testid="receipt-match"') == 2
    assert "This matches what the node was given (699.782572 points" in section
    assert "wanted $0.35, paid $0.35" in section  # the floor top-up of the later era
    assert "$SPON rate of the era: $0.5 per $SPON" in section
    assert f'href="/provider/nodes/{node.id}/rewards/{eras[1].id}/receipt.json"' in section


def test_a_receipt_that_does_not_recompute_to_the_reward_is_flagged(owner_client, rewarded):
    node, _other, eras = rewarded
    NodeReward.objects.filter(node=node, era=eras[1]).update(points=Decimal("700"))
    html = owner_client.get(f"/provider/nodes/{node.id}/").content.decode()
    assert html.count('data-testid="receipt-mismatch"') == 1
    assert "The node was given 700 points" in html


def test_the_receipt_json_is_the_stored_receipt_and_recomputes(owner_client, rewarded):
    node, _other, eras = rewarded
    response = owner_client.get(f"/provider/nodes/{node.id}/rewards/{eras[0].id}/receipt.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    receipt = json.loads(response.content)
    assert receipt == NodeReward.objects.get(node=node, era=eras[0]).receipt
    assert sdk.receipt_check(receipt) == []
    assert sdk.reward_recompute(receipt)["points"] == Decimal("699.782572")


def test_another_providers_node_and_receipt_are_404(owner_client, rewarded):
    _node, other, eras = rewarded
    assert owner_client.get(f"/provider/nodes/{other.id}/").status_code == 404
    assert owner_client.get(f"/provider/nodes/{other.id}/rewards/{eras[0].id}/receipt.json").status_code == 404
    assert owner_client.get(f"/api/v1/provider/nodes/{other.id}/rewards").status_code == 404


def test_a_node_without_rewards_says_so(owner_client, provider):
    node = make_node(provider=provider)
    html = owner_client.get(f"/provider/nodes/{node.id}/").content.decode()
    assert 'data-testid="rewards-empty"' in html
    assert owner_client.get(f"/provider/nodes/{node.id}/rewards/999999/receipt.json").status_code == 404


def test_the_api_lists_the_nodes_receipts_newest_first_by_cursor(owner_client, rewarded):
    node, _other, eras = rewarded
    url = f"/api/v1/provider/nodes/{node.id}/rewards"
    page = owner_client.get(url, {"limit": 1}).json()
    assert [item["era_start"][:10] for item in page["items"]] == [f"{eras[1].started_at:%Y-%m-%d}"]
    item = page["items"][0]
    reward = NodeReward.objects.get(node=node, era=eras[1])
    assert item["points"] == "699.782572"
    assert item["spon"] == str(int(reward.spon))
    assert Decimal(item["spon_tokens"]) == Decimal(int(reward.spon)) / SPON
    assert item["floor_topup"] == "0.350000" and item["rental"] == "2.100000"
    assert item["recomputed"] == {"points": "699.782572", "spon": str(int(reward.spon)), "matches": True}
    assert item["receipt"] == reward.receipt
    assert item["receipt_url"].endswith(f"/provider/nodes/{node.id}/rewards/{eras[1].id}/receipt.json")
    assert page["next_cursor"]
    second = owner_client.get(url, {"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [i["era_start"][:10] for i in second["items"]] == [f"{eras[0].started_at:%Y-%m-%d}"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    "query, status",
    [({"cursor": "not-a-cursor"}, 422), ({"limit": 0}, 422), ({"limit": 101}, 422), ({"limit": "x"}, 422)],
)
def test_bad_api_input_is_a_4xx(owner_client, rewarded, query, status):
    node, _other, _eras = rewarded
    response = owner_client.get(f"/api/v1/provider/nodes/{node.id}/rewards", query)
    assert response.status_code == status
    assert response.json()["message"]


def test_the_api_needs_a_login(db):
    response = Client().get("/api/v1/provider/nodes/1/rewards")
    assert response.status_code == 401
