"""A deployment from submission to close: hold, order, match, lease, meter, events, close."""

from __future__ import annotations

import pytest
from spheron_sdk.matching import verify_match

from billing.models import Hold, UsageMeter
from billing.selectors import user_balances
from core import clock
from core.errors import ApplicationError
from marketplace.deployments import services as deployments
from marketplace.matching import proof as match_proofs
from marketplace.models import DeploymentStatus, Lease, LeaseStatus, MatchRecord, OrderStatus
from tests.deployments.conftest import spec_text

pytestmark = pytest.mark.django_db


def test_create_match_run_close(renter, market, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deployment = deployments.deployment_create(user=renter, source=spec_text())
    assert callbacks, "matching is enqueued on commit"
    assert deployment.status == DeploymentStatus.PENDING
    hold = Hold.objects.get(id=deployment.hold_id)
    assert hold.amount == 500_000 * 24  # 24 h at the max price
    assert user_balances(user=renter).reserved == hold.amount

    order = deployment.orders.get()
    outcome = deployments.match_order(order_id=order.id)
    assert outcome.status == "matched"
    lease = outcome.lease
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.MATCHED and deployment.hold_id is None
    assert lease.node_id in {market["cheap"].id, market["good"].id, market["dear"].id}
    node = lease.node
    node.refresh_from_db()
    assert node.available_gpus == 0 and node.available_cpu_cores == node.cpu_cores - 2
    meter = UsageMeter.objects.get(id=lease.meter_id)
    assert meter.price_per_hour == lease.price_per_hour_micros
    order.refresh_from_db()
    assert order.status == OrderStatus.MATCHED

    record = MatchRecord.objects.get(order=order)
    proof = match_proofs.match_proof(record)
    checked = verify_match(proof)
    assert checked["ok"] and checked["winner"] == lease.node_id

    # The agent reports it.
    assert deployments.lease_events(node.id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    assert deployments.lease_events(node.id, lease.id, [{"type": "log", "stream": "stdout", "lines": ["hi"]}])
    assert not deployments.lease_events(node.id + 999, lease.id, [{"type": "running"}])
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.RUNNING

    clock.advance(1800)
    deployments.deployment_close(deployment=deployment)
    deployment.refresh_from_db()
    lease.refresh_from_db()
    node.refresh_from_db()
    meter.refresh_from_db()
    assert deployment.status == DeploymentStatus.CLOSED and deployment.close_reason == "user_closed"
    # The agent still runs the workload until its next heartbeat brings the stop: the capacity
    # stays taken until it confirms.
    assert lease.status == LeaseStatus.CLOSED and node.available_gpus == 0
    assert meter.closed_at is not None and meter.charged == lease.price_per_hour_micros // 2
    balances = user_balances(user=renter)
    assert balances.reserved == 0 and balances.available == 100_000_000 - meter.charged
    kinds = list(deployment.events.values_list("kind", flat=True))
    assert kinds == ["created", "matched", "provisioning", "running", "closed"]
    # Until the agent confirms the stop (with its next heartbeat) the lease shows "stopping".
    assert (lease.agent_state, lease.agent_state_shown) == ("running", "stopping")
    assert deployments.lease_events(node.id, lease.id, [{"type": "stopped", "message": "stopped on request"}])
    lease.refresh_from_db()
    assert (lease.agent_state, lease.agent_state_shown, lease.status) == ("stopped", "stopped", LeaseStatus.CLOSED)
    node.refresh_from_db()
    assert node.available_gpus == 1 and lease.capacity_released_at is not None
    assert deployment.events.filter(kind="agent_stopped", message="stopped on request").exists()


def test_not_enough_credit_is_a_clear_402_with_a_top_up_link(market):
    from tests.factories import make_user

    poor = make_user()
    with pytest.raises(ApplicationError) as error:
        deployments.deployment_create(user=poor, source=spec_text())
    assert error.value.status == 402 and "Top up" in error.value.message
    assert error.value.extra["top_up_url"] == "/billing/"


def test_no_match_fails_with_a_reason_a_person_can_act_on(renter, market):
    deployment = deployments.deployment_create(
        user=renter, source=spec_text(model="h100", price="2.00", mode="provider", region="eu-west")
    )
    order = deployment.orders.get()
    assert deployments.match_order(order_id=order.id).status == "waiting"  # before the deadline
    clock.advance(61)
    outcome = deployments.match_order(order_id=order.id)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("no H100 in eu-west under $2.00/h")
    assert "1 in us-east from $" in outcome.reason
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED and outcome.reason in deployment.failure_reason
    assert user_balances(user=renter).reserved == 0


def test_node_failure_fails_over_and_charges_nothing_after_the_last_heartbeat(renter, market):
    deployment = deployments.deployment_create(user=renter, source=spec_text())
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    failed_node = lease.node_id
    last_good = clock.now()
    clock.advance(600)
    assert deployments.node_leases_fail(node_id=failed_node, last_good=last_good) == 1
    lease.refresh_from_db()
    meter = UsageMeter.objects.get(id=lease.meter_id)
    assert lease.close_reason == "provider_failed" and meter.closed_at == last_good and meter.charged == 0
    assert lease.agent_state_shown == "lost"  # the node stopped reporting: nobody confirms a stop
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.PENDING
    second = deployment.orders.get(attempt=2)
    assert second.excluded_node_ids == [failed_node]
    new_lease = deployments.match_order(order_id=second.id).lease
    assert new_lease.node_id != failed_node
    assert Lease.objects.filter(deployment=deployment, status=LeaseStatus.ACTIVE).count() == 1
    assert "failover" in list(deployment.events.values_list("kind", flat=True))


def test_demo_nodes_report_like_an_agent_would(renter, market):
    from marketplace.models import LeaseLogLine
    from marketplace.tasks import simulate_demo_lease
    from providers.models import Node

    Node.objects.update(is_simulated=True)
    deployment = deployments.deployment_create(user=renter, source=spec_text())
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    assert simulate_demo_lease(lease.id) is True
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.RUNNING
    assert "simulated demo node" in LeaseLogLine.objects.filter(lease=lease).first().line
    # A demo node has no agent to confirm the stop: closing stops it.
    deployments.deployment_close(deployment=deployment)
    lease.refresh_from_db()
    assert (lease.status, lease.agent_state) == (LeaseStatus.CLOSED, "stopped")


def test_the_matched_event_counts_the_candidates_in_words(renter, market):
    def matched_message(node=None) -> tuple[str, int]:
        source = spec_text() if node is None else spec_text().replace('{region: ""}', f'{{region: "", node: {node}}}')
        deployment = deployments.deployment_create(user=renter, source=source)
        deployments.match_order(order_id=deployment.orders.get().id)
        record = MatchRecord.objects.get(order__deployment=deployment)
        return deployment.events.get(kind="matched").message, record.candidate_count

    message, count = matched_message()
    assert count > 1 and f"best of {count} candidates;" in message
    assert "(GeForce RTX 4090, " in message  # the model's name, not its slug
    taken = Lease.objects.get().node_id
    free = next(market[name].id for name in ("cheap", "good", "dear") if market[name].id != taken)
    message, count = matched_message(node=free)
    assert count == 1 and "the only candidate;" in message and "best of" not in message


@pytest.mark.parametrize("failover", [True, False])
def test_disabling_a_node_ends_its_leases_now_and_fails_over(renter, market, failover, settings):
    from providers.models import Node, NodeEvent, NodeStatus
    from providers.services import node_disable
    from tests.factories import make_user

    source = spec_text() if failover else spec_text().replace("  mode: fizz", "  mode: fizz\n  failover: false")
    deployment = deployments.deployment_create(user=renter, source=source)
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    clock.advance(1800)
    admin = make_user(email="ops@example.test", is_staff=True)

    assert node_disable(node_id=lease.node_id, by=admin) == 1
    assert node_disable(node_id=lease.node_id, by=admin) == 0  # already off the market

    node = Node.objects.get(id=lease.node_id)
    # The agent of a disabled node gets no stop: its capacity comes back after the stop timeout.
    assert node.status == NodeStatus.DISABLED and node.available_gpus == node.gpu_count - lease.gpus
    clock.advance(settings.LEASE_STOP_TIMEOUT_SECONDS)
    assert deployments.leases_release_stale_capacity() == 1
    node.refresh_from_db()
    assert node.available_gpus == node.gpu_count
    assert NodeEvent.objects.get(node=node, kind="disabled").message == "disabled by ops@example.test"
    lease.refresh_from_db()
    meter = UsageMeter.objects.get(id=lease.meter_id)
    assert (lease.status, lease.close_reason) == (LeaseStatus.CLOSED, "node_disabled")
    assert meter.charged == lease.price_per_hour_micros // 2  # charged until now, not after
    deployment.refresh_from_db()
    kinds = list(deployment.events.values_list("kind", flat=True))
    assert "node_disabled" in kinds
    if failover:
        assert deployment.status == DeploymentStatus.PENDING and kinds[-1] == "failover"
        assert deployment.orders.get(attempt=2).excluded_node_ids == [node.id]
        new_lease = deployments.match_order(order_id=deployment.orders.get(attempt=2).id).lease
        assert new_lease.node_id != node.id
    else:
        assert (deployment.status, deployment.close_reason) == (DeploymentStatus.CLOSED, "node_disabled")
        assert user_balances(user=renter).reserved == 0
