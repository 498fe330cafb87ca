"""Admin: stake changes go through stake_record, tokens stay hashes, the review flag can be cleared."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers import services
from providers.models import NodeEvent, NodeToken, StakeEvent
from tests.factories import make_node, make_user

pytestmark = pytest.mark.django_db
SPON = Decimal(10) ** 18


@pytest.fixture
def admin_client(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def test_adding_a_stake_event_in_the_admin_records_it_and_moves_the_balance(admin_client, outsider):
    node = make_node(provider=outsider, name="rig-a")
    services.stake_coverage_refresh(provider=outsider)
    response = admin_client.post(
        "/admin/providers/stakeevent/add/",
        {"provider": outsider.id, "kind": "stake", "amount_spon": "200", "reason": "arranged off chain"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    event = StakeEvent.objects.get(provider=outsider)
    assert (event.amount, event.balance_after, event.reason) == (200 * SPON, 200 * SPON, "arranged off chain")
    assert event.created_by.is_staff
    outsider.refresh_from_db()
    node.refresh_from_db()
    assert outsider.staked_spon == 200 * SPON and node.stake_covered
    # The event is then read-only: no editing, no deleting, history stays.
    page = admin_client.get(f"/admin/providers/stakeevent/{event.id}/change/").content.decode()
    assert 'name="amount_spon"' not in page and 'name="reason"' not in page
    assert "Staked: 200 $SPON" in page and "StakeEvent object" not in page
    assert admin_client.post(f"/admin/providers/stakeevent/{event.id}/delete/", {"post": "yes"}).status_code == 403


def test_an_impossible_unstake_is_a_form_error_and_changes_nothing(admin_client, provider):
    before = provider.staked_spon
    response = admin_client.post(
        "/admin/providers/stakeevent/add/", {"provider": provider.id, "kind": "unstake", "amount_spon": "5000"}
    )
    assert response.status_code == 200
    assert "that is less" in response.content.decode()
    provider.refresh_from_db()
    assert provider.staked_spon == before
    assert StakeEvent.objects.filter(provider=provider).count() == 1  # only the fixture's stake


def test_the_staked_balance_is_not_editable_on_the_profile(admin_client, provider):
    page = admin_client.get(f"/admin/providers/providerprofile/{provider.id}/change/").content.decode()
    assert 'name="staked_spon"' not in page
    assert "gpu_prices-TOTAL_FORMS" in page  # list prices inline
    assert "Slash count" in page and 'name="slash_count"' not in page  # shown, kept by stake_record


def test_tokens_are_read_only_hashes_and_cannot_be_added(admin_client, provider):
    row, raw = services.node_token_create(provider=provider, label="rig")
    page = admin_client.get(f"/admin/providers/nodetoken/{row.id}/change/").content.decode()
    assert raw not in page and 'name="token_hash"' not in page and row.token_hash in page
    assert admin_client.get("/admin/providers/nodetoken/add/").status_code == 403


def test_admin_revoke_action_revokes_through_the_service(admin_client, provider):
    row, _raw = services.node_token_create(provider=provider, label="rig")
    admin_client.post("/admin/providers/nodetoken/", {"action": "revoke", "_selected_action": [row.id]})
    assert NodeToken.objects.get(id=row.id).revoked_at is not None


def test_clear_review_action(admin_client, provider):
    flagged = make_node(provider=provider, needs_review=True, review_reason="VRAM mismatch")
    other = make_node(provider=provider, needs_review=True, review_reason="RAM mismatch")
    admin_client.post("/admin/providers/node/", {"action": "clear_review", "_selected_action": [flagged.id]})
    flagged.refresh_from_db()
    other.refresh_from_db()
    assert (flagged.needs_review, flagged.review_reason) == (False, "")
    assert other.needs_review
    from providers.models import NodeEvent

    cleared = NodeEvent.objects.get(node=flagged, kind="flagged")
    assert cleared.message.startswith("review cleared by ")
    assert not NodeEvent.objects.filter(node=other).exists()


def test_node_admin_lists_review_stake_and_simulated_columns(admin_client, provider):
    make_node(provider=provider, name="demo-box", is_simulated=True)
    page = admin_client.get("/admin/providers/node/").content.decode()
    for column in ("column-needs_review", "column-stake_covered", "column-is_simulated", "column-trust_tier"):
        assert column in page
    for parameter in ("needs_review__exact", "stake_covered__exact", "is_simulated__exact"):
        assert parameter in page


def test_timeline_records_are_read_only(admin_client, provider):
    node = make_node(provider=provider)
    event = NodeEvent.objects.create(node=node, kind="online", at=node.created_at)
    assert admin_client.get("/admin/providers/nodeevent/").status_code == 200
    assert admin_client.get("/admin/providers/nodeevent/add/").status_code == 403
    assert admin_client.post(f"/admin/providers/nodeevent/{event.id}/delete/", {"post": "yes"}).status_code == 403
    assert NodeEvent.objects.filter(id=event.id).exists()


def test_node_admin_edits_prices_and_status_but_not_what_leases_and_heartbeats_keep(admin_client, provider):
    from providers.pricing import whole_node_price_per_hour_micros

    node = make_node(provider=provider, name="rig-b")
    page = admin_client.get(f"/admin/providers/node/{node.id}/change/").content.decode()
    for editable in ("name", "status", "region", "in_maintenance", "gpu_price_per_hour_micros", "review_reason"):
        assert f'name="{editable}"' in page, editable
    for kept in ("available_gpus", "available_cpu_cores", "price_per_hour_micros", "trust_tier", "uptime_30d",
                 "stake_covered", "gpu_count", "gpu_model", "provider"):  # fmt: skip
        assert f'name="{kept}"' not in page, kept
    form = {
        "name": "rig-b",
        "mode": node.mode,
        "region": node.region_id,
        "status": node.status,
        "gpu_price_per_hour_micros": "400000",
        "cpu_price_per_core_month_micros": str(node.cpu_price_per_core_month_micros),
        "memory_price_per_gb_month_micros": str(node.memory_price_per_gb_month_micros),
        "storage_price_per_gb_month_micros": str(node.storage_price_per_gb_month_micros),
        "review_reason": "",
    }
    response = admin_client.post(f"/admin/providers/node/{node.id}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    node.refresh_from_db()
    # The node's hourly price follows its per-resource prices.
    assert node.gpu_price_per_hour_micros == 400_000
    assert node.price_per_hour_micros == whole_node_price_per_hour_micros(node)
    bad = admin_client.post(f"/admin/providers/node/{node.id}/change/", {**form, "gpu_price_per_hour_micros": "-1"})
    assert bad.status_code == 200 and "errornote" in bad.content.decode()
    # Nodes come from their agent; their history keeps them.
    assert admin_client.get("/admin/providers/node/add/").status_code == 403
    assert admin_client.post(f"/admin/providers/node/{node.id}/delete/", {"post": "yes"}).status_code == 403


def test_disabling_a_leased_node_in_the_admin_ends_its_lease(admin_client, provider):
    from marketplace.deployments import services as deployments
    from marketplace.models import LeaseStatus
    from providers.models import Node, NodeStatus
    from tests.deployments.conftest import fund, spec_text

    node = make_node(provider=provider, name="rig-c")
    renter = make_user(is_developer=True)
    fund(renter)
    source = spec_text(model=node.gpu_model_id, price="3", duration="1h")
    deployment = deployments.deployment_create(user=renter, source=source)
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    assert lease.node_id == node.id
    form = {
        "name": node.name,
        "mode": node.mode,
        "region": node.region_id,
        "status": NodeStatus.DISABLED,
        "gpu_price_per_hour_micros": str(node.gpu_price_per_hour_micros),
        "cpu_price_per_core_month_micros": str(node.cpu_price_per_core_month_micros),
        "memory_price_per_gb_month_micros": str(node.memory_price_per_gb_month_micros),
        "storage_price_per_gb_month_micros": str(node.storage_price_per_gb_month_micros),
        "review_reason": "",
    }
    response = admin_client.post(f"/admin/providers/node/{node.id}/change/", form, follow=True)

    page = response.content.decode()
    assert "Node rig-c is off the market: 1 running lease(s) ended there" in page
    lease.refresh_from_db()
    assert (lease.status, lease.close_reason) == (LeaseStatus.CLOSED, "node_disabled")
    assert Node.objects.get(id=node.id).status == NodeStatus.DISABLED
    assert NodeEvent.objects.filter(node=node, kind="disabled").count() == 1
