"""POST /api/v1/leases/{lease_id}/events: the node's agent reports on a lease it runs, straight to the
deployments service, with its node secret; another node's lease is a 404."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from django.test import Client

from marketplace.deployments import services as deployments
from marketplace.deployments.agent_api import EventType
from marketplace.models import DeploymentStatus, LeaseLogLine
from providers import liveness
from providers.models import AgentState, Node
from tests.deployments.conftest import spec_text

pytestmark = pytest.mark.django_db


def node_secret(node: Node) -> str:
    secret = liveness.node_secret_new(node.id)
    Node.objects.filter(id=node.id).update(secret_hash=liveness.secret_hash(secret))
    return secret


def post_events(secret: str, lease_id: int, events: list[dict]):
    return Client().post(
        f"/api/v1/leases/{lease_id}/events",
        data=json.dumps({"events": events}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def test_the_agent_starts_a_lease_and_sends_its_logs(renter, market):
    deployment = deployments.deployment_create(user=renter, source=spec_text())
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    secret = node_secret(lease.node)
    events = [{"type": "provisioning"}, {"type": "running"}, {"type": "log", "stream": "stdout", "lines": ["hello"]}]
    response = post_events(secret, lease.id, events)
    assert response.status_code == 202 and response.json() == {"accepted": 3}
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.RUNNING
    assert list(LeaseLogLine.objects.filter(lease=lease).values_list("line", flat=True)) == ["hello"]


def test_another_nodes_lease_is_not_found_and_a_wrong_secret_is_refused(renter, market):
    deployment = deployments.deployment_create(user=renter, source=spec_text())
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    other = next(node for node in market.values() if node.id != lease.node_id)
    response = post_events(node_secret(other), lease.id, [{"type": "running"}])
    assert response.status_code == 404 and response.json()["message"] == "No such lease on this node."
    assert post_events(f"nsk_{lease.node_id}_wrong", lease.id, [{"type": "running"}]).status_code == 401
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.MATCHED


def test_the_event_types_are_the_agents_lease_states_and_log():
    reported = set(AgentState.values) - {AgentState.ASSIGNED}  # `assigned` is the server's, never reported
    assert set(get_args(EventType)) == reported | {"log"}
