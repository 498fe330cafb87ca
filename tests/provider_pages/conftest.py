from __future__ import annotations

import uuid

import pytest

from tests.providers import conftest as provider_fixtures
from tests.providers.conftest import hardware_report, post

# The personas of tests/providers: a provider with a stake, an outsider, a node token.
provider = provider_fixtures.provider
outsider = provider_fixtures.outsider
token = provider_fixtures.token


@pytest.fixture(autouse=True)
def _private_cache(settings):
    """Heartbeats and node credentials live in the cache. The default file cache is shared by every
    test process on the machine, where another run's node 1 is not ours: use a cache of our own."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"pp-{uuid.uuid4()}"}
    }


@pytest.fixture
def provider_client(client, provider):
    client.force_login(provider.user)
    return client


def register(client, raw_token: str, **report) -> dict:
    """A node registered through the agent API, as a real agent does it."""
    response = post(client, "/api/v1/nodes/register", hardware_report(**report), raw_token)
    assert response.status_code in (200, 201), response.content
    return response.json()


def heartbeat(client, node_id: int, secret: str, **body):
    response = post(client, f"/api/v1/nodes/{node_id}/heartbeat", {"agent_version": "0.1.0", **body}, secret)
    assert response.status_code == 200, response.content
    return response.json()
