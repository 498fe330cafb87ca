"""API keys on /account/api-keys/: created with a label, shown once, stored hashed, revoked."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from accounts.models import ApiKey

pytestmark = pytest.mark.django_db
KEY = re.compile(r"sph_[A-Za-z0-9_-]{43}")


def test_a_new_key_is_shown_once_and_only_its_hash_is_stored(dev_client: Client, developer):
    response = dev_client.post("/account/api-keys/", {"label": "CI deploys"})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    [raw_key] = set(KEY.findall(response.content.decode()))
    api_key = ApiKey.objects.get(user=developer)
    assert api_key.label == "CI deploys"
    assert api_key.prefix == raw_key[:12]
    assert api_key.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key not in {api_key.prefix, api_key.key_hash}

    listing = dev_client.get("/account/api-keys/").content.decode()
    assert raw_key not in listing
    assert "CI deploys" in listing and f"{api_key.prefix}…" in listing
    assert "never" in listing  # not used yet


def test_a_new_key_is_in_no_session_row(dev_client: Client, developer):
    from django.contrib.sessions.models import Session

    response = dev_client.post("/account/api-keys/", {"label": "CI deploys"})
    [raw_key] = set(KEY.findall(response.content.decode()))
    dev_client.get("/account/api-keys/")

    assert Session.objects.exists()
    assert not any(raw_key in str(row.get_decoded()) for row in Session.objects.all())


def test_a_label_is_required(dev_client: Client, developer):
    response = dev_client.post("/account/api-keys/", {"label": "   "})

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.filter(user=developer).exists()


def test_revoking_a_key_marks_it_revoked(dev_client: Client, developer):
    api_key, _raw = api_key_create(user=developer, label="laptop")

    response = dev_client.post(f"/account/api-keys/{api_key.id}/revoke/")

    assert response.status_code == 302 and response["Location"] == "/account/api-keys/"
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    page = dev_client.get("/account/api-keys/").content.decode()
    assert "revoked" in page and "is revoked" in page


def test_revoke_needs_post(dev_client: Client, developer):
    api_key, _raw = api_key_create(user=developer, label="laptop")

    assert dev_client.get(f"/account/api-keys/{api_key.id}/revoke/").status_code == 405
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_an_outsider_can_neither_see_nor_revoke_someone_elses_key(outsider_client: Client, developer):
    api_key, _raw = api_key_create(user=developer, label="owner's production key")

    assert "owner's production key" not in outsider_client.get("/account/api-keys/").content.decode()
    assert outsider_client.post(f"/account/api-keys/{api_key.id}/revoke/").status_code == 404
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_api_keys_page_needs_login(client: Client):
    response = client.get("/account/api-keys/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_roles_page_still_saves_roles_and_links_to_api_keys(dev_client: Client, developer):
    page = dev_client.get("/account/").content.decode()
    assert 'href="/account/api-keys/"' in page

    response = dev_client.post("/account/", {"is_developer": "on", "is_provider": "on"})

    assert response.status_code == 302
    developer.refresh_from_db()
    assert developer.is_provider
