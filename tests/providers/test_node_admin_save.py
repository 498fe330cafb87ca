"""providers.services.node_admin_save: what an admin's edit of a node does, without the admin."""

from __future__ import annotations

import pytest

from providers import services
from providers.models import Node, NodeEvent, NodeStatus
from providers.pricing import whole_node_price_per_hour_micros
from tests.factories import make_node, make_user


@pytest.fixture
def admin_user(db):
    return make_user(is_staff=True, is_superuser=True)


def test_an_edit_recomputes_the_hourly_price_and_forgets_the_cached_auth(
    provider, admin_user, django_capture_on_commit_callbacks
):
    node = make_node(provider=provider, name="rig-a")
    node.gpu_price_per_hour_micros = 400_000
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ended = services.node_admin_save(
            node=node, changed_fields=["gpu_price_per_hour_micros"], initial_status=node.status, by=admin_user
        )
    assert ended == 0
    saved = Node.objects.get(id=node.id)
    assert saved.gpu_price_per_hour_micros == 400_000
    assert saved.price_per_hour_micros == whole_node_price_per_hour_micros(saved)
    assert saved.status == NodeStatus.ONLINE
    assert not NodeEvent.objects.filter(node=node, kind="disabled").exists()
    assert len(callbacks) == 1  # the heartbeat reads status and maintenance from the cache


def test_setting_the_status_to_disabled_goes_through_node_disable(provider, admin_user):
    node = make_node(provider=provider, name="rig-b")
    initial = node.status
    node.status = NodeStatus.DISABLED
    ended = services.node_admin_save(node=node, changed_fields=["status"], initial_status=initial, by=admin_user)
    assert ended == 0  # nothing ran there
    assert node.status == NodeStatus.DISABLED
    assert Node.objects.get(id=node.id).status == NodeStatus.DISABLED
    event = NodeEvent.objects.get(node=node, kind="disabled")
    assert event.message == f"disabled by {admin_user.email}"


def test_a_node_already_disabled_is_saved_without_a_second_disable(provider, admin_user):
    node = make_node(provider=provider, name="rig-c", status=NodeStatus.DISABLED)
    node.name = "rig-c2"
    ended = services.node_admin_save(node=node, changed_fields=["name"], initial_status=node.status, by=admin_user)
    assert ended == 0
    assert Node.objects.get(id=node.id).name == "rig-c2"
    assert not NodeEvent.objects.filter(node=node, kind="disabled").exists()
