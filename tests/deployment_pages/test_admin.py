"""Admin: deployments, orders, leases and match records are browsed, not edited; an admin can close
deployments, with a reason the renter sees, through the same service as the renter's close."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client

from billing.selectors import ledger_total, user_balances
from marketplace.models import CloseReason, DeploymentStatus, Lease, LeaseStatus
from tests.deployment_pages.conftest import create_and_match
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(make_user(email="staff@example.test", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def matched(owner, market):
    return create_and_match(owner)


def test_the_marketplace_records_are_listed_and_shown_read_only(admin_client, matched):
    deployment, lease = matched
    record = deployment.orders.get().match
    for path in ("deployment", "order", "lease", "matchrecord"):
        listing = admin_client.get(f"/admin/marketplace/{path}/")
        assert listing.status_code == 200, path
    page = admin_client.get(f"/admin/marketplace/deployment/{deployment.id}/change/").content.decode()
    assert "Matched node" in page  # the timeline inline
    assert f"lease #{lease.id} on node {lease.node_id}" in page and "/h" in page  # the lease inline, its price
    assert 'name="name"' not in page and 'name="spec_source"' not in page  # nothing to edit
    assert "<pre>version:" in page  # the spec as submitted, its lines kept
    proof = admin_client.get(f"/admin/marketplace/matchrecord/{record.id}/change/").content.decode()
    assert record.commitment in proof and "&quot;node_id&quot;" in proof  # the candidates, as JSON
    assert admin_client.post(f"/admin/marketplace/lease/{lease.id}/delete/", {"post": "yes"}).status_code == 403


def test_closing_from_the_admin_asks_for_a_reason_then_closes_like_the_renter(admin_client, matched, owner):
    deployment, lease = matched
    action = {"action": "close_deployments", "_selected_action": [deployment.id]}

    form = admin_client.post("/admin/marketplace/deployment/", action)
    assert form.status_code == 200 and "Close deployments" in form.content.decode()
    blank = admin_client.post("/admin/marketplace/deployment/", {**action, "apply": "1", "reason": "  "})
    assert "This field is required." in blank.content.decode()
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.MATCHED

    done = admin_client.post(
        "/admin/marketplace/deployment/", {**action, "apply": "1", "reason": "Abuse report #12"}, follow=True
    )
    assert "closed." in done.content.decode()
    deployment.refresh_from_db()
    assert (deployment.status, deployment.close_reason) == (DeploymentStatus.CLOSED, CloseReason.ADMIN_CLOSED)
    assert Lease.objects.get(id=lease.id).status == LeaseStatus.CLOSED
    event = deployment.events.get(kind="closed")
    assert event.message == "Closed by an administrator. Abuse report #12"
    assert user_balances(user=owner).reserved == 0 and ledger_total() == 0
    assert LogEntry.objects.get(object_id=str(deployment.id)).change_message == "Closed: Abuse report #12"

    again = admin_client.post(
        "/admin/marketplace/deployment/", {**action, "apply": "1", "reason": "twice"}, follow=True
    )
    assert "was already closed" in again.content.decode()
    assert deployment.events.filter(kind="closed").count() == 1


def test_staff_without_the_change_permission_cannot_close(matched):
    deployment, _lease = matched
    viewer = make_user(email="viewer@example.test", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deployment"))
    client = Client()
    client.force_login(viewer)
    assert client.get("/admin/marketplace/deployment/").status_code == 200
    response = client.post(
        "/admin/marketplace/deployment/",
        {"action": "close_deployments", "_selected_action": [deployment.id], "apply": "1", "reason": "x"},
    )
    assert response.status_code in (200, 302)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.MATCHED
