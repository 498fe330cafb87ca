"""Era rewards stored after the era close (issue 22, parts 1–3): receipts and $SPON per node, rental
income from the leases, the guaranteed minimum income from the subsidy pool, idempotent re-runs.

The era is yesterday (UTC), so every figure is derived from today's date; the rates and the
clock are set in each test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from spheron_sdk import rewards as sdk

from billing.models import AccountKind, LedgerAccount, LedgerTransaction, TransactionKind, UsageMeter
from chain.models import Rate
from core.errors import ApplicationError
from marketplace.deployments import services as deployments
from marketplace.models import Lease
from providers import uptime
from providers.era_rewards import era_rewards_due, era_rewards_run
from providers.models import (
    ChallengeStatus,
    NodeChallenge,
    NodeOutage,
    NodeReward,
    OutageKind,
    RewardEra,
    Slash,
    SlashStatus,
)
from tests.deployments.conftest import market, renter, spec_text  # noqa: F401 - fixtures
from tests.factories import make_node, make_provider

pytestmark = pytest.mark.calendar
SPON = 10**18
TODAY = datetime.combine(timezone.now().astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
ERA_START = TODAY - timedelta(days=1)
NOW = TODAY + timedelta(hours=1)


def h(hours: float) -> datetime:
    return ERA_START + timedelta(hours=hours)


def _rate(usd: str = "0.10") -> None:
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal(usd), at=ERA_START, source="test")


def _agent_node(**fields):
    fields.setdefault("registered_at", ERA_START - timedelta(days=5))
    return make_node(is_simulated=False, **fields)


def _close(now: datetime = NOW) -> None:
    uptime.close_eras(now=now, max_eras=1)


@pytest.fixture
def tiny_pool(settings):
    settings.REWARD_ERA_EMISSION_SPON = Decimal("3100")
    settings.REWARD_FLOOR_POOL_USD = Decimal("1000")
    return settings


@pytest.mark.django_db
def test_points_and_spon_by_hand(tiny_pool):
    _rate()
    # A: one RTX 4090 (medium-1 = 1.0), tier 4 (1.2), all era up, nothing leased: 500 × 1.2 = 600.
    a = _agent_node(trust_tier=4)
    # B: two A6000s (high-1 = 2), tier 6 (1.0), 6 h offline: uptime 0.75 ≥ 0.5, so 2 × 2 × 500 = 2000;
    # a failed challenge short of half its VRAM-free GPUs: GPU shortfall 0.5 × 0.6 = 0.3 → × 0.7 = 1400.
    b = _agent_node(gpu_model="a6000", gpu_count=2, trust_tier=6)
    NodeOutage.objects.create(node=b, kind=OutageKind.OFFLINE, started_at=h(2), ended_at=h(8))
    NodeChallenge.objects.create(
        public_id="ch-b-1", node=b, nonce="n", issued_at=h(10), expires_at=h(10.1), status=ChallengeStatus.FAILED,
        answered_at=h(10.05),
        expected={"gpu_kind": "gpu", "gpu_count": 2, "gpus_free": 2, "gpu_model": "a6000", "vram_gb": 48},
        measured={"gpus": [
            {"name": "NVIDIA RTX A6000", "memory_total_mib": 49140, "memory_free_mib": 49000},
            {"name": "NVIDIA RTX A6000", "memory_total_mib": 49140, "memory_free_mib": 10},
        ]},
        failure_reason="GPU 1 has no free VRAM",
    )  # fmt: skip
    for i in range(3):
        NodeChallenge.objects.create(
            public_id=f"ok-a-{i}", node=a, nonce="n", issued_at=h(i + 1), expires_at=h(i + 1.1),
            status=ChallengeStatus.PASSED, answered_at=h(i + 1.01),
        )  # fmt: skip
    _close()
    era = era_rewards_run(era_start=ERA_START, now=NOW)

    ra, rb = NodeReward.objects.get(node=a), NodeReward.objects.get(node=b)
    assert ra.points == Decimal("600")
    assert ra.receipt["liveness"]["passed"] == 3
    assert rb.receipt["uptime"]["uptime"] == "0.75"
    assert [c["id"] for c in rb.receipt["liveness"]["challenges"]] == ["ch-b-1"]
    # B's failed challenge forfeits its era (the slashing policy): 0 points, a reason to read.
    assert (
        rb.receipt["forfeit"]["forfeited"] is True and "1 failed liveness challenge" in rb.receipt["forfeit"]["reason"]
    )
    assert rb.points == 0
    # All of the emission to A, and the receipts recompute with the SDK alone.
    assert int(ra.spon) == 3100 * SPON and int(rb.spon) == 0
    assert era.spon == 3100 * SPON == int(era.emission)
    for row in (ra, rb):
        assert sdk.receipt_check(row.receipt) == []
        assert Decimal(sdk.reward_recompute(row.receipt)["points"]) == row.points
    assert ra.spon_usd_micros == 310 * 10**6  # 3,100 $SPON at $0.10
    assert era.nodes == 2 and era.points == Decimal("600") and era.runs == 1


@pytest.mark.django_db
def test_shares_split_pro_rata_and_the_rerun_changes_nothing(tiny_pool):
    _rate()
    a = _agent_node(trust_tier=4)  # 600 points
    _agent_node(gpu_model="a6000", gpu_count=2, trust_tier=6)  # 2000 points
    _close()
    era = era_rewards_run(era_start=ERA_START, now=NOW)
    amounts = {r.node_id: int(r.spon) for r in NodeReward.objects.filter(era=era)}
    assert sum(amounts.values()) == 3100 * SPON
    assert amounts[a.id] - 3100 * SPON * 600 // 2600 in (0, 1)  # its floor, or one more base unit
    before = list(NodeReward.objects.order_by("id").values())
    ledger_before = LedgerTransaction.objects.count()

    again = era_rewards_run(era_start=ERA_START, now=NOW + timedelta(hours=5))
    assert again.id == era.id and again.runs == 2 and again.changed == 0
    assert list(NodeReward.objects.order_by("id").values()) == before
    assert LedgerTransaction.objects.count() == ledger_before
    # The rate and parameters are the era's own: a new rate or emission does not move a re-run.
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("9"), at=ERA_START + timedelta(hours=1), source="t")
    tiny_pool.REWARD_ERA_EMISSION_SPON = Decimal("1")
    assert era_rewards_run(era_start=ERA_START, now=NOW).changed == 0


@pytest.mark.django_db
def test_an_unfinished_or_misaligned_era_is_refused():
    with pytest.raises(ApplicationError, match="not ended"):
        era_rewards_run(era_start=TODAY, now=NOW)
    with pytest.raises(ApplicationError, match="00:00 UTC"):
        era_rewards_run(era_start=ERA_START + timedelta(hours=3), now=NOW)


@pytest.mark.django_db
def test_rental_income_and_utilization_come_from_the_leases(renter, market, tiny_pool):  # noqa: F811
    _rate()
    deployment = deployments.deployment_create(user=renter, source=spec_text())
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    # The lease ran 12 of the era's 24 hours at $0.20/h, its meter's fee 7%.
    Lease.objects.filter(id=lease.id).update(price_per_hour_micros=200_000, started_at=h(6), ended_at=h(18))
    UsageMeter.objects.filter(id=lease.meter_id).update(price_per_hour=200_000, fee_rate=Decimal("0.07"))
    node = lease.node
    node.is_simulated, node.registered_at, node.trust_tier = False, ERA_START - timedelta(days=3), 6
    node.save()
    _close()
    era_rewards_run(era_start=ERA_START, now=NOW)
    row = NodeReward.objects.get(node=node)
    assert row.rental_micros == 2_400_000 - 168_000  # $2.40 gross, 7% fee
    assert row.receipt["utilization"]["utilization"] == "0.5"
    assert row.points == Decimal("625")  # 500 × 1.0 × (1 + 0.5 × 0.5)


@pytest.mark.django_db
def test_the_floor_tops_up_good_standing_nodes_and_explains_the_others(settings):
    settings.REWARD_ERA_EMISSION_SPON = Decimal("0.000001")  # rewards worth ~nothing: the floor decides
    settings.REWARD_FLOOR_POOL_USD = Decimal("100")
    _rate()
    provider = make_provider()
    good = _agent_node(provider=provider, trust_tier=6)  # medium-1: $0.03 × 24 h = $0.72
    low_uptime = _agent_node(provider=provider, trust_tier=6)
    NodeOutage.objects.create(node=low_uptime, kind=OutageKind.OFFLINE, started_at=h(1), ended_at=h(3))
    reconnected = _agent_node(provider=provider, trust_tier=6)  # 30 min off, back at 00:30: cool-down
    NodeOutage.objects.create(node=reconnected, kind=OutageKind.OFFLINE, started_at=h(0), ended_at=h(0.5))
    slashed = _agent_node(provider=provider, trust_tier=6)
    Slash.objects.create(
        provider=provider, node=slashed, amount=SPON, reason="test", reason_hash="0x" + "0" * 64,
        reference="test:1", status=SlashStatus.OFF_CHAIN, created_at=h(5),
    )  # fmt: skip
    _close()
    era = era_rewards_run(era_start=ERA_START, now=NOW)
    rows = {r.node_id: r for r in NodeReward.objects.filter(era=era)}
    g = rows[good.id]
    assert (g.floor_eligible, g.floor_micros) == (True, 720_000)
    assert g.floor_topup_micros == g.floor_wanted_micros == 720_000 - g.rental_micros - g.spon_usd_micros
    assert "below 95%" in rows[low_uptime.id].floor_reason
    assert "cool-down" in rows[reconnected.id].floor_reason
    assert "slashed" in rows[slashed.id].floor_reason
    assert era.floor_paid_micros == g.floor_topup_micros and era.floor_ratio == 1
    pending = LedgerAccount.objects.get(kind=AccountKind.PROVIDER_PENDING, user=provider.user)
    assert pending.balance == g.floor_topup_micros
    subsidy = LedgerAccount.objects.get(kind=AccountKind.PLATFORM_SUBSIDY, user=None)
    assert subsidy.balance == -g.floor_topup_micros
    assert LedgerTransaction.objects.filter(kind=TransactionKind.FLOOR_TOPUP).count() == 1
    # Re-run: same top-ups, nothing posted again.
    assert era_rewards_run(era_start=ERA_START, now=NOW).changed == 0
    assert LedgerTransaction.objects.filter(kind=TransactionKind.FLOOR_TOPUP).count() == 1


@pytest.mark.django_db
def test_an_insufficient_pool_cuts_every_top_up_pro_rata(settings):
    settings.REWARD_ERA_EMISSION_SPON = Decimal("0")
    settings.REWARD_FLOOR_POOL_USD = Decimal("1.00")
    _rate()
    nodes = [_agent_node(trust_tier=6, gpu_model="h100") for _ in range(3)]  # ultra-high-2: $0.36 × 24 = $8.64
    _close()
    era = era_rewards_run(era_start=ERA_START, now=NOW)
    assert era.floor_wanted_micros == 3 * 8_640_000
    assert era.floor_ratio == Decimal("0.038580")  # 1 / 25.92, truncated
    rows = NodeReward.objects.filter(node__in=nodes)
    assert {r.floor_topup_micros for r in rows} == {333_331}  # 8.64 × 0.038580, rounded down
    assert era.floor_paid_micros == 3 * 333_331 <= era.floor_budget_micros == 1_000_000
    assert era.floor_pool_left_micros == 1_000_000 - 999_993


@pytest.mark.django_db
def test_the_dashboard_says_by_how_much_the_floor_was_cut(settings, client):
    settings.REWARD_ERA_EMISSION_SPON = Decimal("0")
    settings.REWARD_FLOOR_POOL_USD = Decimal("1.00")
    _rate()
    provider = make_provider()
    for _ in range(3):
        _agent_node(provider=provider, trust_tier=6, gpu_model="h100")
    _close()
    era_rewards_run(era_start=ERA_START, now=NOW)
    client.force_login(provider.user)
    page = client.get("/provider/earnings/?days=7").content.decode()
    assert 'data-testid="floor-cuts"' in page
    section = page[page.index('data-testid="floor-cuts"') :]
    assert "wanted $25.92 and got $0.999993, cut by 96.14%" in " ".join(section.split()), section[:900]
    # A pool that covers everyone: no such section.
    settings.REWARD_FLOOR_POOL_USD = Decimal("1000")
    RewardEra.objects.all().delete()
    era_rewards_run(era_start=ERA_START, now=NOW)
    assert 'data-testid="floor-cuts"' not in client.get("/provider/earnings/?days=7").content.decode()


@pytest.mark.django_db
def test_no_rate_no_floor(settings):
    settings.REWARD_FLOOR_POOL_USD = Decimal("100")
    node = _agent_node(trust_tier=6)
    _close()
    era = era_rewards_run(era_start=ERA_START, now=NOW)
    row = NodeReward.objects.get(node=node)
    assert era.spon_usd_rate is None and row.floor_topup_micros == 0
    assert "no $SPON rate" in row.floor_reason


@pytest.mark.django_db
def test_era_rewards_due_runs_each_closed_era_once(settings):
    _rate()
    _agent_node(trust_tier=6, registered_at=ERA_START - timedelta(days=3))
    uptime.close_eras(now=NOW, max_eras=3)
    assert era_rewards_due(now=NOW) == 3
    assert era_rewards_due(now=NOW) == 0
    assert RewardEra.objects.count() == 3
    assert all(e.runs == 1 for e in RewardEra.objects.all())


@pytest.mark.django_db
def test_trust_tier_of_the_receipt_is_the_one_held_during_the_era():
    """Promotion after an era pays the next era at the new tier, not the one it closed."""
    node = _agent_node(trust_tier=7, registered_at=ERA_START - timedelta(days=3))
    uptime.close_eras(now=NOW, max_eras=3)  # three good eras: promoted 7 → 6 at the last one's end
    node.refresh_from_db()
    assert node.trust_tier == 6
    era_rewards_due(now=NOW)
    receipts = NodeReward.objects.filter(node=node).order_by("era__started_at")
    assert [r.receipt["trust"]["tier"] for r in receipts] == [7, 7, 7]
    assert all(r.points == 0 for r in receipts)  # tier 7's multiplier is 0


@pytest.mark.django_db
def test_the_beat_closes_rewards_and_the_calculator_reads_the_last_era(tiny_pool):
    from providers.calculator import spon_per_point_basis
    from providers.era_rewards import eras_close
    from providers.rewards import params_from_settings

    _rate()
    _agent_node(trust_tier=4, registered_at=ERA_START)  # one era: 600 points, all 3,100 $SPON
    assert spon_per_point_basis(params_from_settings()).source == "assumed"
    result = eras_close(now=NOW)
    assert (result["eras_closed"], result["eras_rewarded"]) == (1, 1)
    assert result["tree"] == ""  # no provider has linked a stake address yet: no tree
    basis = spon_per_point_basis(params_from_settings())
    assert basis.source == "last_era"
    assert basis.spon_per_point == Decimal(3100) / Decimal(600)
    assert eras_close(now=NOW) == {"eras_closed": 0, "eras_rewarded": 0, "tree": ""}


# --- Property: random eras through the database ------------------------------------------------------


_NODE = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["rtx4090", "a6000", "h100", "rtx3060"]),
        "gpus": st.integers(1, 4),
        "tier": st.integers(4, 7),
        "outages": st.lists(st.tuples(st.floats(0, 23), st.floats(0.01, 14)), max_size=3),
        "failed": st.booleans(),
    }
)


@pytest.mark.django_db
@hsettings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    nodes=st.lists(_NODE, min_size=1, max_size=6),
    emission=st.sampled_from(["0", "1", "3100", "100000.5"]),
    pool=st.sampled_from(["0", "0.5", "3", "1000"]),
)
def test_random_eras_issue_the_emission_and_stay_within_the_pool(settings, nodes, emission, pool):
    settings.REWARD_ERA_EMISSION_SPON = Decimal(emission)
    settings.REWARD_FLOOR_POOL_USD = Decimal(pool)
    with transaction.atomic():
        _rate("0.001")
        for spec in nodes:
            node = _agent_node(gpu_model=spec["model"], gpu_count=spec["gpus"], trust_tier=spec["tier"])
            for start, length in spec["outages"]:
                NodeOutage.objects.create(
                    node=node, kind=OutageKind.OFFLINE, started_at=h(start), ended_at=h(start + length)
                )
            if spec["failed"]:
                NodeChallenge.objects.create(
                    public_id=f"f-{node.id}", node=node, nonce="n", issued_at=h(12), expires_at=h(12.1),
                    status=ChallengeStatus.MISSED, answered_at=None,
                )  # fmt: skip
        _close()
        era = era_rewards_run(era_start=ERA_START, now=NOW)
        rows = list(NodeReward.objects.filter(era=era))
        emitted = int(Decimal(emission).scaleb(18))
        assert int(era.spon) == (emitted if era.points > 0 else 0) == sum(int(r.spon) for r in rows)
        assert all(int(r.spon) >= 0 and r.floor_topup_micros >= 0 for r in rows)
        assert era.floor_paid_micros == sum(r.floor_topup_micros for r in rows) <= era.floor_budget_micros
        for row in rows:
            assert sdk.receipt_check(row.receipt) == []
            assert Decimal(sdk.reward_recompute(row.receipt)["points"]) == row.points
        subsidy = LedgerAccount.objects.filter(kind=AccountKind.PLATFORM_SUBSIDY, user=None).first()
        assert (subsidy.balance if subsidy else 0) == -era.floor_paid_micros
        assert era_rewards_run(era_start=ERA_START, now=NOW).changed == 0
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_the_dashboard_card_shows_the_rewards_and_links_to_the_claim(tiny_pool, client):
    _rate()
    provider = make_provider()
    client.force_login(provider.user)
    page = client.get("/provider/").content.decode()
    assert 'data-testid="rewards-card"' in page and "$SPON yet" in page
    _agent_node(provider=provider, trust_tier=4, registered_at=ERA_START)
    _close()
    era_rewards_run(era_start=ERA_START, now=NOW)
    page = " ".join(client.get("/provider/").content.decode().split())
    assert '<p class="price" data-testid="rewards-total">3,100 <small>$SPON over all eras</small></p>' in page
    assert f"the era of {ERA_START.day} {ERA_START:%b}: 3,100 $SPON ($310.00 at its rate)" in page
    assert 'href="/provider/rewards/" data-testid="rewards-claim-link"' in page
