"""Parallel creates that run out of credit all get the same answer: 402 with the top-up link,
never a 409 from the ledger's lock or a 500 (issue 18, point 4)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from billing.selectors import user_balances
from marketplace.models import Deployment
from tests.deployment_pages.conftest import bearer
from tests.deployments.conftest import fund, spec_text
from tests.factories import make_user
from tests.needs import requires_postgresql

THREADS = 6

# The threads need committed rows; SQLite's shared in-memory test database cannot hold parallel
# writers (production SQLite takes the write lock up front).
pytestmark = requires_postgresql("for row locks and parallel writers")


@pytest.fixture(scope="module", autouse=True)
def _reference_data_back_after_the_last_test(django_db_setup, django_db_blocker):
    """A transactional test empties every table when it ends: put the reference data (GPU
    models, regions) back, so a reused test database still holds it next session."""
    yield
    contents = getattr(connection, "_test_serialized_contents", None)
    if contents and connection.vendor == "postgresql":
        with django_db_blocker.unblock():
            connection.creation.deserialize_db_from_string(contents)


@pytest.fixture
def renter(transactional_db, market):
    user = make_user(email="parallel@example.test", is_developer=True)
    fund(user, 20)  # one 24 h hold at $0.50/h is $12: room for one deployment, not two
    return user


def test_parallel_creates_that_run_out_of_credit_all_get_402(renter):
    headers = bearer(renter)
    body = {"spec": spec_text(price="0.50", duration="24h")}
    barrier = threading.Barrier(THREADS)
    answers: list[tuple[int, dict]] = []

    def create() -> None:
        try:
            client = Client(**headers)
            barrier.wait()
            response = client.post("/api/v1/deployments", body, content_type="application/json")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    codes = sorted(code for code, _body in answers)
    assert codes == [201] + [402] * (THREADS - 1), answers
    refused = [body for code, body in answers if code == 402]
    assert all("top_up_url" in body["extra"] for body in refused)
    assert Deployment.objects.filter(owner=renter).count() == 1
    assert user_balances(user=renter).available == 8_000_000
