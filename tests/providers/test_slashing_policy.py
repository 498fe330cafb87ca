"""The slashing policy (issue 22, part 4): downtime during a lease slashes its value in $SPON (the
renter is not charged for it), repeated failed liveness in an era slashes SLASH_LIVENESS_SPON once
per era, and `era_forfeit_reason` says why an era's rewards are forfeited."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import UsageMeter
from chain.models import Rate
from core import clock
from marketplace.deployments import services as deployments
from marketplace.deployments.penalties import downtime_usd_micros, lease_downtime_slash, spon_base_units_for
from marketplace.deployments.selectors import deployment_cost_so_far
from marketplace.models import CloseReason, Lease, LeaseStatus
from providers import liveness
from providers.models import ChallengeStatus, Node, NodeChallenge, Slash, SlashStatus
from providers.services import stake_record
from providers.slashing import era_bounds, era_forfeit_reason, liveness_failure_slash, liveness_reference
from tests.deployments.conftest import market, renter, spec_text  # noqa: F401 - fixtures
from tests.factories import make_node, make_provider

SPON = 10**18
PRICE = 180_000  # $0.18 an hour


def _rate(usd: str = "0.05") -> None:
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal(usd), at=timezone.now(), source="test")


def _running_lease(renter, *, price: int = PRICE) -> Lease:  # noqa: F811
    deployment = deployments.deployment_create(user=renter, source=spec_text())
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    # The lease's locked price and its meter's, set to a round figure for the hand computation.
    Lease.objects.filter(id=lease.id).update(price_per_hour_micros=price)
    UsageMeter.objects.filter(id=lease.meter_id).update(price_per_hour=price)
    lease.refresh_from_db()
    return lease


def _fail_over(lease: Lease, *, silent_for: int, settings, capture):
    """The node's last heartbeat now, then `silent_for` seconds of silence: marked offline (meters
    paused at the heartbeat) and failed over (the grace is shorter)."""
    settings.FAILOVER_GRACE_SECONDS = 30
    last_good = clock.now()
    Node.objects.filter(id=lease.node_id).update(last_seen_at=last_good)
    clock.advance(silent_for)
    with capture(execute=True):
        assert liveness.node_mark_offline(node_id=lease.node_id, at=last_good, reason="no heartbeat")
    lease.refresh_from_db()
    assert (lease.status, lease.close_reason) == (LeaseStatus.CLOSED, CloseReason.PROVIDER_FAILED)
    return last_good


# --- Downtime during a lease ---------------------------------------------------------------------


def test_the_downtime_value_by_hand():
    # $0.18/h for 100 s = $0.005 = 5,000 micro-USD; at $0.05 a $SPON that is 0.1 $SPON.
    assert downtime_usd_micros(price_per_hour_micros=PRICE, seconds=100) == 5_000
    assert spon_base_units_for(5_000, usd_per_spon=Decimal("0.05")) == SPON // 10
    # Rounded down, as the meter rounds and never more than the downtime was worth.
    assert downtime_usd_micros(price_per_hour_micros=1_000_000, seconds=1) == 277  # $1/h for 1 s
    assert spon_base_units_for(1, usd_per_spon=Decimal("3")) == 333_333_333_333
    assert downtime_usd_micros(price_per_hour_micros=PRICE, seconds=0) == 0


def test_a_failed_over_lease_slashes_the_value_of_its_downtime(
    renter,  # noqa: F811
    market,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    _rate("0.05")
    provider = market["cheap"].provider
    stake_record(provider=provider, kind="stake", amount="1000", reason="agreement")  # off chain
    lease = _running_lease(renter)
    clock.advance(600)
    last_good = _fail_over(lease, silent_for=100, settings=settings, capture=django_capture_on_commit_callbacks)

    slash = Slash.objects.get()
    assert (slash.reference, slash.evidence_type, slash.evidence_id, slash.node_id) == (
        f"lease-downtime:{lease.id}",
        "lease",
        str(lease.id),
        lease.node_id,
    )
    assert (int(slash.amount), int(slash.amount_slashed), slash.status) == (SPON // 10, SPON // 10, "off_chain")
    # The clock runs on during the test: the interval ends when the lease was closed, 100 s and a
    # few milliseconds after the last heartbeat (possibly in the next second).
    end = lease.ended_at
    assert timedelta(seconds=100) <= end - last_good < timedelta(seconds=101)
    assert slash.reason == (
        f"Lease {lease.id} on node {lease.node_id}: down 100 s "
        f"({last_good:%Y-%m-%d %H:%M:%S}–{end:%Y-%m-%d %H:%M:%S} UTC) before failover, "
        "worth $0.005 at $0.18/h; $SPON at $0.05."
    )
    provider.refresh_from_db()
    assert int(provider.staked_spon) == 1000 * SPON - SPON // 10


def test_the_renter_is_not_charged_for_the_downtime(
    renter,  # noqa: F811
    market,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    _rate()
    lease = _running_lease(renter)
    clock.advance(3600)
    last_good = _fail_over(lease, silent_for=100, settings=settings, capture=django_capture_on_commit_callbacks)
    meter = UsageMeter.objects.get(id=lease.meter_id)
    # Charged for the hour up to the last heartbeat, not for the 100 s the slash takes from the provider.
    assert meter.closed_at == last_good
    assert meter.charged == PRICE == deployment_cost_so_far(lease.deployment)
    clock.advance(3600)
    assert deployment_cost_so_far(lease.deployment) == PRICE
    assert Slash.objects.get().reason.startswith(f"Lease {lease.id} on node {lease.node_id}: down 100 s")


def test_one_slash_per_lease_whatever_runs_again(
    renter,  # noqa: F811
    market,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    _rate()
    stake_record(provider=market["cheap"].provider, kind="stake", amount="1000", reason="agreement")
    lease = _running_lease(renter)
    last_good = _fail_over(lease, silent_for=100, settings=settings, capture=django_capture_on_commit_callbacks)
    slash = Slash.objects.get()
    assert deployments.node_leases_fail(node_id=lease.node_id, last_good=last_good) == 0
    assert deployments.leases_fail_silent_nodes(clock.now()) == 0
    clock.advance(500)  # a later call computes a longer downtime: still the one slash
    assert lease_downtime_slash(lease, last_good - timedelta(seconds=500)).pk == slash.pk
    assert Slash.objects.count() == 1


def test_without_a_fresh_rate_nothing_is_decided_and_it_is_logged(
    renter,  # noqa: F811
    market,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
    caplog,
):
    Rate.objects.create(
        symbol="SPON",
        usd_per_unit=Decimal("0.05"),
        at=timezone.now() - timedelta(seconds=settings.CHAIN_RATE_MAX_AGE_SECONDS + 60),
        source="test",
    )
    lease = _running_lease(renter)
    with caplog.at_level(logging.ERROR, logger="marketplace.deployments.penalties"):
        _fail_over(lease, silent_for=100, settings=settings, capture=django_capture_on_commit_callbacks)
    assert not Slash.objects.exists()
    (record,) = caplog.records
    assert record.getMessage().startswith(f"lease {lease.id}: no downtime slash decided: no fresh SPON rate")
    assert "100 s, worth $0.005" in record.getMessage()
    assert lease.deployment.orders.filter(attempt=2).exists()  # the failover went on


def test_demo_nodes_and_the_switch_off_slash_nothing(
    renter,  # noqa: F811
    market,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    _rate()
    settings.SLASH_LEASE_DOWNTIME = False
    lease = _running_lease(renter)
    last_good = _fail_over(lease, silent_for=100, settings=settings, capture=django_capture_on_commit_callbacks)
    assert not Slash.objects.exists()
    settings.SLASH_LEASE_DOWNTIME = True
    Node.objects.filter(id=lease.node_id).update(is_simulated=True)
    lease.node.refresh_from_db()
    assert lease_downtime_slash(lease, last_good) is None
    assert not Slash.objects.exists()


# --- Failed liveness -----------------------------------------------------------------------------

WRONG = {"agent_version": "9.9.9", "cpu_cores": 2, "memory_gb": 64, "memory_available_gb": 60, "storage_free_gb": 900}


def _challenge(node: Node, at, *, measured=None, capture, answer: bool = True) -> NodeChallenge:
    """A challenge issued at `at`, answered a second later (with `measured`: failing by default)."""
    issued = liveness.challenge_issue(node_id=node.id, now=at)
    if answer:
        response = {"id": issued["id"], "nonce": issued["nonce"], "measured": measured or WRONG}
        with capture(execute=True):
            liveness.challenge_answer(node_id=node.id, response=response, now=at + timedelta(seconds=1))
    return NodeChallenge.objects.get(public_id=issued["id"])


@pytest.fixture
def staked_node(db, settings):
    settings.SLASH_LIVENESS_REPEATS = 3
    settings.SLASH_LIVENESS_SPON = 50
    provider = make_provider()
    stake_record(provider=provider, kind="stake", amount="1000", reason="agreement")  # off chain
    return make_node(provider=provider, is_simulated=False)


def test_the_nth_failed_challenge_of_an_era_slashes_once_and_again_in_the_next_era(
    staked_node, django_capture_on_commit_callbacks
):
    node = staked_node
    era_start, _ = era_bounds(clock.now())
    capture = django_capture_on_commit_callbacks
    _challenge(node, era_start + timedelta(hours=1), capture=capture)
    _challenge(node, era_start + timedelta(hours=2), measured={"agent_version": "9.9.9"}, capture=capture)
    _challenge(node, era_start + timedelta(hours=2, minutes=30), measured=None, capture=capture, answer=False)
    assert not Slash.objects.exists()  # two failures (an unanswered challenge is downtime, not a failure)

    third = _challenge(node, era_start + timedelta(hours=3), capture=capture)
    slash = Slash.objects.get()
    assert (slash.reference, slash.evidence_type, slash.evidence_id, slash.node_id) == (
        f"liveness:{node.id}:{era_start:%Y-%m-%d}T00:00:00Z",
        "challenge",
        third.public_id,
        node.id,
    )
    assert slash.reference == liveness_reference(node_id=node.id, era_start=era_start)
    assert slash.reason.startswith(
        f"Node {node.id} failed 3 liveness challenges in the era of {era_start:%Y-%m-%d} UTC (3 slash 50 $SPON); last: "
    )
    assert (slash.status, int(slash.amount_slashed)) == (SlashStatus.OFF_CHAIN, 50 * SPON)

    _challenge(node, era_start + timedelta(hours=4), capture=capture)  # a fourth in the same era
    assert Slash.objects.count() == 1

    next_era = era_start + timedelta(days=1)
    for hour in (1, 2):
        _challenge(node, next_era + timedelta(hours=hour), capture=capture)
    assert Slash.objects.count() == 1
    _challenge(node, next_era + timedelta(hours=3), capture=capture)
    assert Slash.objects.count() == 2
    assert Slash.objects.order_by("id").last().reference == f"liveness:{node.id}:{next_era:%Y-%m-%d}T00:00:00Z"
    node.provider.refresh_from_db()
    assert int(node.provider.staked_spon) == 900 * SPON


def test_the_liveness_policy_spares_demo_nodes_and_a_zero_amount(staked_node, settings):
    node = staked_node
    era_start, _ = era_bounds(clock.now())
    for hour in (1, 2, 3):
        NodeChallenge.objects.create(
            public_id=f"c{hour}",
            node=node,
            nonce="n",
            issued_at=era_start + timedelta(hours=hour),
            expires_at=era_start + timedelta(hours=hour, minutes=2),
            status=ChallengeStatus.FAILED,
            answered_at=era_start + timedelta(hours=hour, seconds=1),
        )
    settings.SLASH_LIVENESS_SPON = 0
    assert liveness_failure_slash(node.id, "c3", "short") is None
    settings.SLASH_LIVENESS_SPON = 50
    Node.objects.filter(id=node.id).update(is_simulated=True)
    assert liveness_failure_slash(node.id, "c3", "short") is None
    assert not Slash.objects.exists()
    Node.objects.filter(id=node.id).update(is_simulated=False)
    assert liveness_failure_slash(node.id, "c3", "short").reference.startswith(f"liveness:{node.id}:")


def test_era_forfeit_reason(staked_node, django_capture_on_commit_callbacks):
    node = staked_node
    capture = django_capture_on_commit_callbacks
    era_start, era_end = era_bounds(clock.now())
    assert era_forfeit_reason(node, era_start, era_end) == ""

    good = dict(WRONG, agent_version="9.9.9", cpu_cores=16, storage_free_gb=480)
    good["gpus"] = [{"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564, "memory_free_mib": 24000}]
    passed = _challenge(node, era_start + timedelta(hours=1), measured=good, capture=capture)
    assert passed.status == ChallengeStatus.PASSED
    _challenge(node, era_start + timedelta(hours=1, minutes=10), capture=capture, answer=False)  # unanswered
    _challenge(node, era_start - timedelta(hours=1), capture=capture)  # the era before
    assert era_forfeit_reason(node, era_start, era_end) == ""

    failed = _challenge(node, era_start + timedelta(hours=5), measured=dict(good, storage_free_gb=10), capture=capture)
    assert failed.status == ChallengeStatus.FAILED
    assert era_forfeit_reason(node, era_start, era_end) == (
        f"1 failed liveness challenge (first {failed.public_id} at {era_start + timedelta(hours=5):%H:%M:%S} UTC: "
        f"{failed.failure_reason[:120]})"
    )

    # Fewer cores than registered: the node is flagged (spoofed resources), and it failed again.
    _challenge(node, era_start + timedelta(hours=6), measured=dict(good, cpu_cores=8), capture=capture)
    reason = era_forfeit_reason(node.id, era_start, era_end)
    assert reason.startswith("spoofed resources: registered 16 CPU cores, found 8 (at ")
    assert "; 2 failed liveness challenges (first " in reason
    assert era_forfeit_reason(node, era_end, era_end + timedelta(days=1)) == ""
