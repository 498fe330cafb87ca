"""GET /api/v1/me: the account and the key a request came with."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from tests.factories import make_user


@pytest.mark.django_db
def test_me_with_a_key_shows_its_scopes_cap_and_networks():
    user = make_user(email="dev@example.test", is_provider=True)
    _row, raw = api_key_create(user=user, label="ci", scopes=["read", "deploy"], daily_spend_cap=25_000_000,
                               allowed_networks=["127.0.0.0/8"])  # fmt: skip
    body = Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").json()
    assert body["email"] == "dev@example.test" and body["roles"] == ["developer", "provider"]
    assert body["auth"] == "api_key"
    assert body["key"]["label"] == "ci" and raw.startswith(body["key"]["prefix"])
    assert body["key"]["scopes"] == ["deploy", "read"] and body["key"]["daily_spend_cap"] == "25.00"
    assert body["key"]["allowed_networks"] == ["127.0.0.0/8"]


@pytest.mark.django_db
def test_me_in_a_browser_session_and_without_login(client):
    assert client.get("/api/v1/me").status_code == 401
    user = make_user()
    client.force_login(user)
    body = client.get("/api/v1/me").json()
    assert (body["auth"], body["key"]) == ("session", None)
