"""What the renter is charged when the node stops heartbeating during a lease (issue 18, point 3):
the lease's meter is paused at the last heartbeat, so an hourly settlement during the silence, the
failover's close and the page all stop there; a node back within the grace is not charged for its
silence, once."""

from __future__ import annotations

from datetime import datetime

import pytest

from billing.models import UsageMeter
from billing.selectors import user_balances
from billing.usage import usage_settle_all
from core import clock
from marketplace.deployments import services as deployments
from marketplace.deployments.selectors import deployment_cost_so_far
from marketplace.models import Lease, LeaseStatus
from providers import liveness
from providers.models import Node
from tests.billing.conftest import assert_ledger_consistent
from tests.deployments.test_failover import go_silent, pinned_spec, running_lease

pytestmark = pytest.mark.django_db

FUNDED = 100 * 1_000_000  # tests.deployments.conftest.fund's default


def cost_until(lease: Lease, moment: datetime) -> int:
    """The lease's price for the whole seconds from its start until `moment`."""
    seconds = int((moment - lease.meter.started_at).total_seconds())
    return lease.price_per_hour_micros * seconds // 3600


def test_a_settlement_while_the_node_is_silent_charges_only_up_to_its_last_heartbeat(
    renter, market, django_capture_on_commit_callbacks
):
    lease = running_lease(renter)
    clock.advance(1800)
    last_good = go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    clock.advance(40)  # the hourly run lands 101 s into the silence, before the failover

    usage_settle_all(now=clock.now())

    meter = UsageMeter.objects.get(id=lease.meter_id)
    assert meter.paused_at == last_good
    assert meter.charged == cost_until(lease, last_good) > 0
    # The page shows what the ledger charged, and it stays there.
    assert deployment_cost_so_far(lease.deployment) == meter.charged
    clock.advance(15)
    usage_settle_all(now=clock.now())
    assert UsageMeter.objects.get(id=lease.meter_id).charged == meter.charged
    assert_ledger_consistent()


def test_after_failover_the_renter_paid_the_price_until_the_last_heartbeat(
    renter, market, settings, django_capture_on_commit_callbacks
):
    node = market["good"]
    lease = running_lease(renter, pinned_spec(node.id))  # closed on failover: no second hold
    clock.advance(3600)
    last_good = go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    usage_settle_all(now=clock.now())  # an hourly run during the silence
    clock.advance(settings.FAILOVER_GRACE_SECONDS - 61 + 1)
    usage_settle_all(now=clock.now())  # and one just before the sweep
    assert liveness.fold_heartbeats()["followed_up"] >= 1  # failed over

    lease.refresh_from_db()
    assert lease.status == LeaseStatus.CLOSED
    meter = UsageMeter.objects.get(id=lease.meter_id)
    expected = cost_until(lease, last_good)
    assert meter.closed_at == last_good and meter.charged == expected
    assert deployment_cost_so_far(lease.deployment) == expected
    renter_balances = user_balances(user=renter)
    assert renter_balances.available == FUNDED - expected  # everything else came back
    assert renter_balances.reserved == 0
    assert_ledger_consistent()


def test_a_node_back_within_the_grace_is_charged_for_everything_but_its_silence_once(
    renter, market, django_capture_on_commit_callbacks
):
    lease = running_lease(renter)
    clock.advance(3600)
    go_silent(lease, silent_for=90, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    usage_settle_all(now=clock.now())  # a settlement during the silence
    with django_capture_on_commit_callbacks(execute=True):
        assert liveness.node_mark_online(node_id=lease.node_id, at=clock.now())
    outage = lease.node.outages.order_by("started_at").last()
    deployments.node_back_online(lease.node_id, outage.started_at, outage.ended_at)  # a repeated hook
    clock.advance(3600)
    usage_settle_all(now=clock.now())
    deployments.deployment_close(deployment=lease.deployment)

    meter = UsageMeter.objects.get(id=lease.meter_id)
    assert meter.excluded_seconds == 90  # the silence, once
    assert meter.charged == 2 * lease.price_per_hour_micros  # the hour before it and the hour after
    assert deployment_cost_so_far(lease.deployment) == meter.charged
    assert user_balances(user=renter).available == FUNDED - meter.charged
    assert user_balances(user=renter).reserved == 0
    assert_ledger_consistent()


def test_the_fold_pauses_the_meter_when_the_offline_hook_was_lost(renter, market, monkeypatch):
    from marketplace import tasks

    monkeypatch.setattr(tasks.fail_node_leases, "apply_async", lambda args, countdown: None)
    lease = running_lease(renter)
    clock.advance(600)
    last_good = clock.now()
    Node.objects.filter(id=lease.node_id).update(last_seen_at=last_good)
    clock.advance(61)
    assert liveness.node_mark_offline(node_id=lease.node_id, at=last_good, reason="no heartbeat")  # hook never runs
    assert UsageMeter.objects.get(id=lease.meter_id).paused_at is None

    deployments.leases_fail_silent_nodes()

    assert UsageMeter.objects.get(id=lease.meter_id).paused_at == last_good
    assert deployment_cost_so_far(lease.deployment) == cost_until(lease, last_good)


def test_a_node_silent_again_before_its_back_online_hook_ran_stays_paused(
    renter, market, django_capture_on_commit_callbacks
):
    lease = running_lease(renter)
    clock.advance(600)
    first = go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False) as back_hooks:
        assert liveness.node_mark_online(node_id=lease.node_id, at=clock.now())
    back_at = clock.now()
    clock.advance(30)
    # Silent again, and found so before the back-online hook ran (another process).
    second = go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    for hook in back_hooks:
        hook()

    meter = UsageMeter.objects.get(id=lease.meter_id)
    assert meter.paused_at == second
    assert meter.excluded_seconds == int((back_at - first).total_seconds())
    clock.advance(300)
    usage_settle_all(now=clock.now())
    assert UsageMeter.objects.get(id=lease.meter_id).charged == deployment_cost_so_far(lease.deployment)
