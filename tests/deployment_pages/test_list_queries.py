"""The deployments list (page and API) reads what every row costs in a fixed number of queries:
as many for ten running deployments as for two."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import clock
from marketplace.deployments import services as deployments
from marketplace.deployments.selectors import deployment_costs
from marketplace.models import Lease, LeaseStatus
from tests.deployment_pages.conftest import create_and_match, fund
from tests.factories import make_node, make_provider

pytestmark = pytest.mark.django_db


def run_deployments(owner, count: int) -> list[Lease]:
    """`count` more deployments, each on its own node with a running lease and an open meter."""
    provider = make_provider()
    leases = []
    for _ in range(count):
        make_node(provider=provider)
        deployment, lease = create_and_match(owner)
        assert lease is not None and lease.meter_id is not None
        deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
        leases.append(lease)
    return leases


def count_queries(client, path: str) -> int:
    # A first request writes the API key's last use (at most once a minute): not the list's cost.
    assert client.get(path).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    ("client_fixture", "path"), [("owner_client", "/deployments/"), ("owner_api", "/api/v1/deployments")]
)
def test_the_list_runs_as_many_queries_for_ten_deployments_as_for_two(request, owner, client_fixture, path):
    fund(owner, 1000)  # ten holds
    client = request.getfixturevalue(client_fixture)
    run_deployments(owner, 2)
    clock.advance(600)
    two = count_queries(client, path)
    run_deployments(owner, 8)
    clock.advance(600)
    ten = count_queries(client, path)
    assert Lease.objects.filter(deployment__owner=owner, status=LeaseStatus.ACTIVE).count() == 10
    assert ten == two, (two, ten)


def test_deployment_costs_reads_many_deployments_in_one_query(owner, django_assert_num_queries):
    fund(owner, 1000)
    leases = run_deployments(owner, 3)
    clock.advance(3600)
    ids = [lease.deployment_id for lease in leases]
    with django_assert_num_queries(1):
        costs = deployment_costs([*ids, 10**9])  # an id without leases costs nothing
    assert costs == {**{lease.deployment_id: lease.price_per_hour_micros for lease in leases}, 10**9: 0}
