"""Node tokens: made on the page, shown once, stored as a hash, revocable, private to their provider."""

from __future__ import annotations

import hashlib
import re

import pytest

from providers import services
from providers.models import Node, NodeToken
from tests.provider_pages.conftest import heartbeat, register
from tests.providers.conftest import post

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'<code data-testid="new-token">(fzt_[A-Za-z0-9_-]+)</code>')


def _session_rows_containing(text: str) -> list[str]:
    from django.contrib.sessions.models import Session

    return [row.session_key for row in Session.objects.all() if text in str(row.get_decoded())]


def test_creating_a_token_shows_it_once_with_the_command_and_stores_only_a_hash(provider_client, provider):
    response = provider_client.post("/provider/tokens/", {"label": "rig-1", "mode": "provider", "region": "eu-west"})
    # Shown in the POST's own response, not after a redirect: nothing has to keep it in between.
    assert response.status_code == 200
    page = response.content.decode()
    raw = TOKEN.search(page).group(1)
    assert f"fizz start --server http://testserver --token {raw}" in page
    assert response["Cache-Control"] == "no-store"

    row = NodeToken.objects.get(provider=provider, label="rig-1")
    assert (row.mode, row.region_id) == ("provider", "eu-west")
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(row.prefix)
    stored = [str(value) for value in NodeToken.objects.filter(id=row.id).values().get().values()]
    assert raw not in stored

    # Never shown again: the next visit lists only the prefix.
    again = provider_client.get("/provider/tokens/").content.decode()
    assert raw not in again and 'data-testid="new-token"' not in again
    assert f"{row.prefix}…" in again


def test_a_created_token_is_in_no_session_row(provider_client, provider):
    response = provider_client.post("/provider/tokens/", {"label": "rig-1", "mode": "fizz", "region": ""})
    raw = TOKEN.search(response.content.decode()).group(1)
    assert _session_rows_containing(raw) == []
    assert _session_rows_containing(raw[len("fzt_") : len("fzt_") + 16]) == []
    assert not any(raw in str(value) for value in provider_client.session.values())


def test_the_shown_token_registers_a_machine(provider_client, provider, client):
    response = provider_client.post("/provider/tokens/", {"label": "rig-1", "mode": "fizz", "region": ""})
    raw = TOKEN.search(response.content.decode()).group(1)
    body = register(client, raw)
    assert Node.objects.get(id=body["node_id"]).provider == provider
    page = provider_client.get("/provider/tokens/").content.decode()
    assert f'href="/provider/nodes/{body["node_id"]}/"' in page  # the bound node links to its page


def test_mode_defaults_to_the_profile_default_mode(provider_client, provider):
    page = provider_client.get("/provider/tokens/").content.decode()
    assert '<option value="fizz" selected>' in page
    provider.default_mode = "provider"
    provider.save()
    page = provider_client.get("/provider/tokens/").content.decode()
    assert '<option value="provider" selected>' in page


def test_a_token_without_a_label_is_refused_next_to_the_label(provider_client, provider):
    before = NodeToken.objects.filter(provider=provider).count()
    response = provider_client.post("/provider/tokens/", {"label": "   ", "mode": "fizz"})
    assert response.status_code == 200
    assert "Enter a label." in response.content.decode()
    assert NodeToken.objects.filter(provider=provider).count() == before


def test_an_unknown_region_is_refused_next_to_the_region(provider_client, provider):
    before = NodeToken.objects.filter(provider=provider).count()
    response = provider_client.post("/provider/tokens/", {"label": "rig", "mode": "fizz", "region": "atlantis"})
    page = response.content.decode()
    assert "Unknown region" in page
    assert NodeToken.objects.filter(provider=provider).count() == before


def test_revoking_a_token_stops_its_node(provider_client, provider, token, client):
    body = register(client, token)
    heartbeat(client, body["node_id"], body["node_secret"])
    row = NodeToken.objects.get(node_id=body["node_id"])

    response = provider_client.post(f"/provider/tokens/{row.id}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/provider/tokens/"
    row.refresh_from_db()
    assert row.revoked_at is not None
    page = provider_client.get("/provider/tokens/").content.decode()
    assert "is revoked" in page and 'data-testid="token-revoked"' in page
    assert f'action="/provider/tokens/{row.id}/revoke/"' not in page  # no second revoke button
    hb = post(client, f"/api/v1/nodes/{body['node_id']}/heartbeat", {"agent_version": "0.1.0"}, body["node_secret"])
    assert hb.status_code == 401


def test_revoke_is_post_only(provider_client, provider):
    row, _raw = services.node_token_create(provider=provider, label="rig")
    assert provider_client.get(f"/provider/tokens/{row.id}/revoke/").status_code == 405
    row.refresh_from_db()
    assert row.revoked_at is None


def test_another_providers_token_is_a_404_and_stays_active(provider_client, outsider):
    theirs, _raw = services.node_token_create(provider=outsider, label="their rig")
    assert provider_client.post(f"/provider/tokens/{theirs.id}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert "their rig" not in provider_client.get("/provider/tokens/").content.decode()
