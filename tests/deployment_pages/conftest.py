"""Personas and a small market for the deployment pages and API: an owner with credits, an
outsider (every permission test uses them), and the nodes of tests.deployments' `market`."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from accounts.models import User
from marketplace.deployments import services as deployments
from marketplace.models import Deployment
from tests.deployments.conftest import fund, market, spec_text  # noqa: F401 - fixtures and helpers
from tests.factories import make_user


@pytest.fixture
def owner(db) -> User:
    user = make_user(email="owner@example.test", is_developer=True)
    fund(user, 100)
    return user


@pytest.fixture
def outsider(db) -> User:
    user = make_user(email="outsider@example.test")
    fund(user, 100)
    return user


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_client(outsider) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


def bearer(user: User) -> dict[str, str]:
    _key, raw = api_key_create(user=user, label="tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def owner_api(owner) -> Client:
    """The API as a script sees it: an API key, no session."""
    return Client(**bearer(owner))


@pytest.fixture
def outsider_api(outsider) -> Client:
    return Client(**bearer(outsider))


def create_and_match(user: User, **spec) -> tuple[Deployment, object]:
    deployment = deployments.deployment_create(user=user, source=spec_text(**spec))
    outcome = deployments.match_order(order_id=deployment.orders.get().id)
    deployment.refresh_from_db()
    return deployment, outcome.lease
