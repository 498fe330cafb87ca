"""The deployment page when its node stops responding: told at once, cost frozen at the last
heartbeat, what happens next and when; a pinned deployment offers a re-deploy (issue 18)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import TestCase

from core import clock
from marketplace.deployments import services as deployments
from marketplace.models import Deployment, DeploymentStatus
from providers import liveness
from providers.models import Node
from tests.deployment_pages.conftest import create_and_match

pytestmark = pytest.mark.django_db
LIVE = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "div#deployment-live"}


def running(owner, **spec):
    deployment, lease = create_and_match(owner, **spec)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    return deployment, lease


def node_goes_silent(lease) -> object:
    """The node's last heartbeat now; the fold marks it offline from then (and its hook runs)."""
    last_good = clock.now()
    Node.objects.filter(id=lease.node_id).update(last_seen_at=last_good)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert liveness.node_mark_offline(node_id=lease.node_id, at=last_good, reason="no heartbeat")
    return last_good


def cost_on(html: str) -> str:
    return re.search(r'data-testid="cost-so-far">([^<]+)', html).group(1).strip()


def test_the_page_says_the_node_stopped_responding_and_the_cost_stops(owner_client, owner, market, settings):
    deployment, lease = running(owner)
    clock.advance(1800)
    before = cost_on(owner_client.get(f"/deployments/{deployment.id}/").content.decode())
    assert 'data-testid="node-silent"' not in owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    last_good = node_goes_silent(lease)
    clock.advance(61)  # the fold finds it silent
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    moving_at = last_good + timedelta(seconds=settings.FAILOVER_GRACE_SECONDS)
    notice = re.search(r'data-testid="node-silent">(.*?)</div>', html, re.S).group(1)
    assert f"Node {lease.node_id} stopped responding at {last_good:%H:%M:%S} UTC" in notice
    assert f"Moving to another node at {moving_at:%H:%M:%S} UTC if it does not come back." in notice
    # The stepper's current step says it too.
    step = re.search(r'<li class="step current warn" data-step="running".*?</li>', html, re.S).group(0)
    assert f"moving to another node at {moving_at:%H:%M:%S} UTC if it does not come back" in step
    # The cost is what it was at the last heartbeat, and stays there.
    frozen = cost_on(html)
    assert frozen == before and 'data-testid="cost-frozen"' in html
    # The agent's state is what it last reported, and says so.
    assert f"as last reported, before {last_good:%H:%M:%S} UTC" in html
    clock.advance(30)
    fragment = owner_client.get(f"/deployments/{deployment.id}/", **LIVE).content.decode()
    assert cost_on(fragment) == frozen and 'data-testid="node-silent"' in fragment
    api = owner_client.get(f"/api/v1/deployments/{deployment.id}").json()
    assert api["cost_so_far_micros"] == lease.price_per_hour_micros * 1800 // 3600  # to the last heartbeat
    assert api["lease"]["node_silent_since"].startswith(f"{last_good:%Y-%m-%dT%H:%M:%S}")
    assert api["lease"]["failover_at"].startswith(f"{moving_at:%Y-%m-%dT%H:%M:%S}")


def test_a_silent_node_that_comes_back_clears_the_notice(owner_client, owner, market):
    deployment, lease = running(owner)
    node_goes_silent(lease)
    assert 'data-testid="node-silent"' in owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    with TestCase.captureOnCommitCallbacks(execute=True):
        liveness.node_mark_online(node_id=lease.node_id, at=clock.now())
    page = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    assert 'data-testid="node-silent"' not in page and "as last reported" not in page
    assert owner_client.get(f"/api/v1/deployments/{deployment.id}").json()["lease"]["failover_at"] is None


def test_a_pinned_deployment_says_it_cannot_move_and_offers_a_redeploy(owner_client, owner, market, settings):
    node = market["good"]
    deployment, lease = running(owner, region=f'"", node: {node.id}')
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    assert f"pinned to node {node.id}: it cannot move to another node" in html
    assert 'data-testid="redeploy"' not in html  # nothing wrong yet

    last_good = node_goes_silent(lease)
    clock.advance(61)
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    closes_at = last_good + timedelta(seconds=settings.FAILOVER_GRACE_SECONDS)
    assert f"pinned to node {node.id}, so it cannot move to another node: it closes at {closes_at:%H:%M:%S} UTC" in html
    assert "Close and re-deploy on a similar node" in html and 'data-testid="redeploy-close-button"' in html

    # Failed over: closed, nothing held for a search that cannot succeed, and the re-deploy offered.
    clock.advance(settings.FAILOVER_GRACE_SECONDS)
    deployments.node_leases_fail(node_id=node.id, last_good=last_good)
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    assert f"It was pinned to node {node.id}, so it could not move to another node" in html
    assert "Re-deploy on a similar node" in html

    response = owner_client.post(f"/deployments/{deployment.id}/redeploy/")
    again = Deployment.objects.exclude(id=deployment.id).get()
    assert response.status_code == 302 and response["Location"] == f"/deployments/{again.id}/"
    assert again.spec["node"] is None and again.spec["gpu_models"] == [node.gpu_model_id]
    assert again.status == DeploymentStatus.PENDING
    page = owner_client.get(response["Location"]).content.decode()
    assert f"without its pin to node {node.id}" in page


def test_only_the_owner_can_redeploy(outsider_client, owner, market):
    deployment, _lease = running(owner, region=f'"", node: {market["good"].id}')
    assert outsider_client.post(f"/deployments/{deployment.id}/redeploy/").status_code == 404
    assert Deployment.objects.count() == 1


def test_rent_says_a_pinned_deployment_cannot_move(owner_client, market):
    html = owner_client.get(f"/deployments/new/?node={market['good'].id}").content.decode()
    assert "Pinned, it cannot move to another node: if this node fails, the deployment closes" in html
    assert "none: pinned, it closes if the node fails" in html  # the check under the editor


def test_the_list_marks_a_deployment_whose_node_is_silent(owner_client, owner, market):
    deployment, lease = running(owner)
    assert 'data-testid="row-node-silent"' not in owner_client.get("/deployments/").content.decode()
    last_good = node_goes_silent(lease)
    html = owner_client.get("/deployments/").content.decode()
    assert f"node silent since {last_good:%H:%M:%S} UTC" in html
