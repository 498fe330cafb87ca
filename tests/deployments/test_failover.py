"""Failover counted from the last good heartbeat, pinned deployments, and capacity held until the
agent has stopped the old workload (issue 18, point 3)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import yaml

from billing.models import Hold, UsageMeter
from billing.selectors import user_balances
from core import clock
from marketplace.deployments import services as deployments
from marketplace.deployments.selectors import deployment_cost_so_far
from marketplace.models import CloseReason, DeploymentStatus, Lease, LeaseStatus
from providers import liveness
from providers.models import Node, NodeStatus
from tests.deployments.conftest import spec_text
from tests.factories import make_node

pytestmark = pytest.mark.django_db


def pinned_spec(node_id: int) -> str:
    return spec_text().replace('{region: ""}', f'{{region: "", node: {node_id}}}')


def running_lease(renter, source: str | None = None) -> Lease:
    deployment = deployments.deployment_create(user=renter, source=source or spec_text())
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    lease.refresh_from_db()
    return lease


def go_silent(lease: Lease, *, silent_for: int, django_capture_on_commit_callbacks) -> datetime:
    """The node's last heartbeat, then `silent_for` seconds of nothing; the fold marks it offline."""
    last_good = clock.now()
    Node.objects.filter(id=lease.node_id).update(last_seen_at=last_good)
    clock.advance(silent_for)
    with django_capture_on_commit_callbacks(execute=True):
        assert liveness.node_mark_offline(node_id=lease.node_id, at=last_good, reason="no heartbeat")
    return last_good


# --- The grace counts from the last heartbeat -----------------------------------------------------


def test_the_failover_check_waits_only_what_is_left_of_the_grace(renter, market, settings, monkeypatch,
                                                                  django_capture_on_commit_callbacks):  # fmt: skip
    from marketplace import tasks

    scheduled = []
    monkeypatch.setattr(tasks.fail_node_leases, "apply_async", lambda args, countdown: scheduled.append(countdown))
    lease = running_lease(renter)
    go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    # Found silent 61 s after its last heartbeat: 59 s of the 120 s grace are left, not 120.
    assert scheduled == [settings.FAILOVER_GRACE_SECONDS - 61]


def test_a_grace_shorter_than_the_offline_delay_fails_over_when_the_node_is_found_silent(
    renter, market, settings, django_capture_on_commit_callbacks
):
    settings.FAILOVER_GRACE_SECONDS = 30
    lease = running_lease(renter)
    last_good = go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    lease.refresh_from_db()
    assert (lease.status, lease.close_reason) == (LeaseStatus.CLOSED, CloseReason.PROVIDER_FAILED)
    assert UsageMeter.objects.get(id=lease.meter_id).closed_at == last_good
    failed = lease.deployment.events.get(kind="node_failed").message
    assert failed.startswith(f"Node {lease.node_id} stopped heartbeating at {last_good:%H:%M:%S} UTC; silent 61 s")
    assert "longer than the 30 s grace" in failed
    assert lease.deployment.orders.filter(attempt=2).exists()


def test_the_fold_fails_over_a_node_silent_longer_than_the_grace_even_if_the_check_was_lost(
    renter, market, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from marketplace import tasks

    monkeypatch.setattr(tasks.fail_node_leases, "apply_async", lambda args, countdown: None)  # lost
    lease = running_lease(renter)
    last_good = go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    clock.advance(settings.FAILOVER_GRACE_SECONDS - 61 - 1)  # 119 s of silence
    liveness.fold_heartbeats()
    lease.refresh_from_db()
    assert lease.status == LeaseStatus.ACTIVE
    clock.advance(2)  # 121 s: the next fold
    assert liveness.fold_heartbeats()["followed_up"] == 1
    lease.refresh_from_db()
    assert lease.status == LeaseStatus.CLOSED
    message = lease.deployment.events.get(kind="node_failed").message
    assert f"stopped heartbeating at {last_good:%H:%M:%S} UTC; silent 121 s, longer than the 120 s grace" in message


def test_a_node_back_within_the_grace_keeps_its_lease(renter, market, settings, django_capture_on_commit_callbacks):
    lease = running_lease(renter)
    last_good = go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    clock.advance(30)
    liveness.node_mark_online(node_id=lease.node_id, at=clock.now())
    clock.advance(40)  # 131 s after the last good heartbeat: past the grace it was given then
    liveness.fold_heartbeats()  # the sweep: online now, so nothing to fail
    assert deployments.node_leases_fail(node_id=lease.node_id, last_good=last_good) == 0  # the scheduled check
    lease.refresh_from_db()
    assert lease.status == LeaseStatus.ACTIVE


def test_a_node_back_within_the_grace_is_not_charged_for_its_silence(
    renter, market, django_capture_on_commit_callbacks
):
    lease = running_lease(renter)
    clock.advance(3600)
    go_silent(lease, silent_for=90, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    frozen = deployment_cost_so_far(lease.deployment)
    assert frozen == lease.price_per_hour_micros  # the hour up to the last heartbeat
    with django_capture_on_commit_callbacks(execute=True):
        liveness.node_mark_online(node_id=lease.node_id, at=clock.now())
    # Back: the cost goes on from where it stopped, not from where it would be with the silence.
    assert deployment_cost_so_far(lease.deployment) == frozen
    clock.advance(3600)
    assert deployment_cost_so_far(lease.deployment) == 2 * lease.price_per_hour_micros
    assert UsageMeter.objects.get(id=lease.meter_id).excluded_seconds == 90
    back = lease.deployment.events.get(kind="node_back").message
    assert back.startswith(f"Node {lease.node_id} is back after 90 s without a heartbeat")


def test_an_old_check_after_a_second_silence_waits_for_the_new_grace(renter, market, settings):
    lease = running_lease(renter)
    first_silence = clock.now()
    clock.advance(100)
    # Back, heard from, then silent again 10 s ago.
    Node.objects.filter(id=lease.node_id).update(status=NodeStatus.OFFLINE, last_seen_at=clock.now())
    clock.advance(10)
    assert deployments.node_leases_fail(node_id=lease.node_id, last_good=first_silence) == 0
    lease.refresh_from_db()
    assert lease.status == LeaseStatus.ACTIVE


# --- What the renter sees while the node is silent --------------------------------------------


def test_the_cost_stops_at_the_last_heartbeat_while_the_node_is_silent(
    renter, market, django_capture_on_commit_callbacks
):
    lease = running_lease(renter)
    clock.advance(3600)
    last_good = go_silent(lease, silent_for=61, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    frozen = deployment_cost_so_far(lease.deployment)
    assert frozen == lease.price_per_hour_micros  # one hour, up to the last heartbeat
    clock.advance(100)
    assert deployment_cost_so_far(lease.deployment) == frozen
    # ...and the failover charges the same.
    deployments.node_leases_fail(node_id=lease.node_id, last_good=last_good)
    assert deployment_cost_so_far(lease.deployment) == frozen
    assert UsageMeter.objects.get(id=lease.meter_id).charged == frozen


# --- Pinned deployments -----------------------------------------------------------------------


def test_a_pinned_deployment_is_closed_without_a_new_hold_and_redeploys_unpinned(renter, market):
    pinned_node = market["good"]
    lease = running_lease(renter, pinned_spec(pinned_node.id))
    assert lease.node_id == pinned_node.id
    holds_before = Hold.objects.count()
    last_good = clock.now()
    clock.advance(200)
    assert deployments.node_leases_fail(node_id=pinned_node.id, last_good=last_good) == 1

    deployment = lease.deployment
    deployment.refresh_from_db()
    assert (deployment.status, deployment.close_reason) == (DeploymentStatus.CLOSED, CloseReason.PROVIDER_FAILED)
    assert Hold.objects.count() == holds_before  # no hold for a search that cannot succeed
    assert not deployment.orders.filter(attempt=2).exists()
    assert user_balances(user=renter).reserved == 0
    closed = deployment.events.filter(kind="closed").last().message
    assert f"pinned to node {pinned_node.id}, so it cannot move to another node" in closed

    again = deployments.deployment_redeploy(user=renter, deployment=deployment)
    assert again.spec["node"] is None
    assert again.spec["gpu_models"] == deployment.spec["gpu_models"] == [pinned_node.gpu_model_id]
    assert again.max_price_per_hour_micros == deployment.max_price_per_hour_micros
    assert (again.spec["cpu_cores"], again.spec["memory_gb"]) == (deployment.spec["cpu_cores"], 4)
    assert "node" not in (yaml.safe_load(again.spec_source)["deployment"].get("attributes") or {})
    # A similar node takes it (the failed one is offline... and full until its agent confirms).
    Node.objects.filter(id=pinned_node.id).update(status=NodeStatus.OFFLINE)
    new_lease = deployments.match_order(order_id=again.orders.get().id).lease
    assert new_lease.node_id in {market["cheap"].id, market["dear"].id}


def test_redeploying_a_pinned_deployment_whose_node_is_silent_closes_it_first(renter, market):
    lease = running_lease(renter, pinned_spec(market["cheap"].id))
    again = deployments.deployment_redeploy(user=renter, deployment=lease.deployment)
    lease.deployment.refresh_from_db()
    assert lease.deployment.status == DeploymentStatus.CLOSED and again.is_active
    assert "Re-deployed on a similar node." in lease.deployment.events.get(kind="closed").message


def test_an_unpinned_deployment_is_not_redeployed_this_way(renter, market):
    from core.errors import ApplicationError

    lease = running_lease(renter)
    with pytest.raises(ApplicationError) as error:
        deployments.deployment_redeploy(user=renter, deployment=lease.deployment)
    assert error.value.status == 409


# --- Capacity comes back when the workload has stopped ------------------------------------------


def one_gpu_node_lease(renter) -> tuple[Node, Lease]:
    node = make_node(gpu_price_per_hour_micros=100_000)
    lease = running_lease(renter, pinned_spec(node.id))
    return node, lease


def test_a_closed_lease_holds_the_node_until_the_agent_reports_the_stop(renter, market):
    node, lease = one_gpu_node_lease(renter)
    deployments.deployment_close(deployment=lease.deployment)
    # The agent still reports the workload: it is told to stop, and nothing new starts there.
    assert deployments.assignments_for_node(node.id, [{"lease_id": lease.id, "state": "running"}]) == [
        {"lease_id": lease.id, "action": "stop"}
    ]
    Node.objects.exclude(id=node.id).update(status=NodeStatus.OFFLINE)  # this node is the only one
    next_one = deployments.deployment_create(user=renter, source=spec_text())
    assert deployments.match_order(order_id=next_one.orders.get().id).status == "waiting"
    node.refresh_from_db()
    assert node.available_gpus == 0

    deployments.lease_events(node.id, lease.id, [{"type": "stopped", "message": "stopped by the server"}])
    node.refresh_from_db()
    assert node.available_gpus == 1
    clock.advance(10)  # past the retry wait
    assert deployments.match_order(order_id=next_one.orders.get().id).status == "matched"


def test_a_heartbeat_without_the_ended_lease_frees_its_capacity(renter, market):
    node, lease = one_gpu_node_lease(renter)
    deployments.deployment_close(deployment=lease.deployment)
    assert deployments.assignments_for_node(node.id, []) == []  # the agent no longer runs it
    node.refresh_from_db()
    lease.refresh_from_db()
    assert node.available_gpus == 1 and lease.capacity_released_at is not None
    # Once only: a repeated report changes nothing.
    deployments.lease_events(node.id, lease.id, [{"type": "stopped"}])
    node.refresh_from_db()
    assert node.available_gpus == 1


def test_capacity_comes_back_after_the_stop_timeout_when_no_agent_confirms(renter, market, settings):
    node, lease = one_gpu_node_lease(renter)
    last_good = clock.now()
    Node.objects.filter(id=node.id).update(status=NodeStatus.OFFLINE, last_seen_at=last_good)
    clock.advance(settings.FAILOVER_GRACE_SECONDS + 1)
    liveness.fold_heartbeats()  # fails the lease over (pinned: closed)
    lease.refresh_from_db()
    assert lease.status == LeaseStatus.CLOSED and lease.agent_state_shown == "lost"
    node.refresh_from_db()
    assert node.available_gpus == 0
    clock.advance(settings.LEASE_STOP_TIMEOUT_SECONDS - 1)
    liveness.fold_heartbeats()
    node.refresh_from_db()
    assert node.available_gpus == 0
    clock.advance(2)
    liveness.fold_heartbeats()
    node.refresh_from_db()
    lease.refresh_from_db()
    assert node.available_gpus == 1
    assert lease.capacity_released_at - lease.ended_at >= timedelta(seconds=settings.LEASE_STOP_TIMEOUT_SECONDS)


def test_a_lease_whose_workload_already_exited_frees_the_node_at_once(renter, market):
    node, lease = one_gpu_node_lease(renter)
    deployments.lease_events(node.id, lease.id, [{"type": "exited", "exit_code": 0}])
    node.refresh_from_db()
    assert node.available_gpus == 1
