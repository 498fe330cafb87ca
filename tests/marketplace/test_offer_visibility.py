"""The public offer (/gpus/<id>/ and GET /api/v1/offers/{id}) exists only for nodes the catalog
lists; anyone else's unlisted node is a 404, like a node that does not exist. A node's public name
is the provider's token label, never the machine's hostname."""

from __future__ import annotations

import pytest
from django.test import Client

from providers.models import Node
from tests.factories import make_node, make_user
from tests.provider_pages.conftest import _private_cache, heartbeat, register  # noqa: F401 - a fixture
from tests.providers import conftest as provider_fixtures

pytestmark = pytest.mark.django_db
UNLISTED = ("offline", "maintenance", "fully_rented")
provider = provider_fixtures.provider
token = provider_fixtures.token


@pytest.mark.parametrize("kind", UNLISTED)
def test_an_unlisted_node_is_a_404_to_visitors_and_other_users(client, market, kind):
    node = market[kind]
    for viewer in (None, make_user()):
        if viewer is not None:
            client.force_login(viewer)
        page = client.get(f"/gpus/{node.id}/")
        api = client.get(f"/api/v1/offers/{node.id}")
        assert page.status_code == 404
        assert api.status_code == 404 and api.json() == {"message": f"No offer with node id {node.id}.", "extra": {}}
        assert node.name not in page.content.decode()


@pytest.mark.parametrize("kind", UNLISTED)
def test_the_owner_still_sees_an_unlisted_node(client, market, kind):
    node = market[kind]
    client.force_login(node.provider.user)
    page = client.get(f"/gpus/{node.id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="offer-status"' in html and 'data-testid="rent-link"' not in html
    assert client.get(f"/api/v1/offers/{node.id}").json()["listed"] is False


def test_a_node_without_stake_is_not_an_offer(client, db):
    node = make_node(stake_covered=False)
    assert client.get(f"/gpus/{node.id}/").status_code == 404
    assert client.get(f"/api/v1/offers/{node.id}").status_code == 404


def test_a_registered_node_is_named_after_its_token_label_not_its_hostname(client, provider, token):
    body = register(Client(), token, machine="gpu-box-in-my-garage")
    heartbeat(Client(), body["node_id"], body["node_secret"])
    node = Node.objects.get(id=body["node_id"])
    assert node.hostname == "host-gpu-box-in-my-garage"
    assert node.name == "box 1"  # the token's label

    listed = client.get(f"/api/v1/offers/{node.id}")
    assert listed.status_code == 200, "a registered, staked, online node is listed"
    assert listed.json()["name"] == "box 1"
    for url in ("/gpus/", f"/gpus/{node.id}/", "/api/v1/offers", f"/api/v1/offers/{node.id}"):
        assert "garage" not in client.get(url).content.decode(), url


def test_nodes_named_after_their_hostname_are_renamed_by_the_migration(provider, token):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("providers.migrations.0009_node_names_not_hostnames")
    body = register(Client(), token, machine="m1")
    named = Node.objects.get(id=body["node_id"])
    Node.objects.filter(id=named.id).update(name="host-m1")  # as registration used to name it
    chosen = make_node(provider=provider, hostname="secret-host")
    suffixed = make_node(provider=provider, hostname="secret-host")
    Node.objects.filter(id=chosen.id).update(name="my own name")
    Node.objects.filter(id=suffixed.id).update(name="secret-host-2")

    migration.names_from_token_labels(apps, None)

    assert Node.objects.get(id=named.id).name == "box 1"
    assert Node.objects.get(id=chosen.id).name == "my own name"
    assert Node.objects.get(id=suffixed.id).name == f"node-{suffixed.id}"
