"""A renter keeps seeing the node their deployment runs on (their page links to it) even once it is
fully rented and so no longer a public offer; anyone else gets a 404."""

from __future__ import annotations

import pytest

from tests.deployment_pages.conftest import create_and_match

pytestmark = pytest.mark.django_db


def test_the_renter_sees_their_fully_rented_node_and_an_outsider_does_not(owner_client, outsider_client, owner, market):
    deployment, lease = create_and_match(owner)
    lease.node.refresh_from_db()
    assert lease.node.available_gpus == 0  # one GPU, now leased: not listed

    detail = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    assert f'href="/gpus/{lease.node_id}/"' in detail
    assert owner_client.get(f"/gpus/{lease.node_id}/").status_code == 200
    assert owner_client.get(f"/api/v1/offers/{lease.node_id}").status_code == 200
    assert outsider_client.get(f"/gpus/{lease.node_id}/").status_code == 404
    assert outsider_client.get(f"/api/v1/offers/{lease.node_id}").status_code == 404
