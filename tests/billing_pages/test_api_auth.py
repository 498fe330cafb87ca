"""The billing API accepts a session (with CSRF for writes) or `Authorization: Bearer <key>`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.api_keys import api_key_create, api_key_revoke
from accounts.models import ApiKey
from tests.billing_pages.conftest import USD, fund

pytestmark = pytest.mark.django_db
BALANCE = "/api/v1/billing/balance"
TRANSACTIONS = "/api/v1/billing/transactions"
TOPUPS = "/api/v1/billing/topups"


def bearer(raw_key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def assert_unauthenticated(response) -> None:
    assert response.status_code == 401
    assert response.json() == {"message": "Authentication required.", "extra": {}}


def test_session_user_reads_their_balance(dev_client: Client, developer):
    fund(developer, 25 * USD)

    response = dev_client.get(BALANCE)

    assert response.status_code == 200
    assert response.json()["available"] == "25.000000"


def test_api_key_reads_the_key_owners_balance_and_marks_the_key_used(client: Client, developer):
    fund(developer, 7 * USD)
    api_key, raw_key = api_key_create(user=developer, label="script")

    response = client.get(BALANCE, **bearer(raw_key))

    assert response.status_code == 200
    assert response.json()["available_micros"] == 7 * USD
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


def test_last_used_is_written_at_most_once_a_minute(client: Client, developer):
    api_key, raw_key = api_key_create(user=developer, label="script")
    recently = timezone.now() - timedelta(seconds=20)
    ApiKey.objects.filter(id=api_key.id).update(last_used_at=recently)

    client.get(BALANCE, **bearer(raw_key))
    api_key.refresh_from_db()
    assert api_key.last_used_at == recently

    ApiKey.objects.filter(id=api_key.id).update(last_used_at=recently - timedelta(minutes=5))
    client.get(BALANCE, **bearer(raw_key))
    api_key.refresh_from_db()
    assert api_key.last_used_at > recently


def test_a_revoked_key_is_refused(client: Client, developer):
    api_key, raw_key = api_key_create(user=developer, label="leaked")
    api_key_revoke(user=developer, key_id=api_key.id)

    assert_unauthenticated(client.get(BALANCE, **bearer(raw_key)))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sph_not-a-real-key-at-all-0000000000000000000000",
        "Bearer ",
        "Bearer " + "sph_" + "x" * 5000,
        "Basic ZGV2QGV4YW1wbGUudGVzdDpwYXNzd29yZA==",
        "sph_missing_scheme",
    ],
)
def test_a_wrong_key_is_refused(client: Client, developer, header: str):
    api_key_create(user=developer, label="real")
    assert_unauthenticated(client.get(BALANCE, HTTP_AUTHORIZATION=header))


def test_a_key_of_a_deactivated_user_is_refused(client: Client, developer):
    _api_key, raw_key = api_key_create(user=developer, label="script")
    developer.is_active = False
    developer.save(update_fields=["is_active"])

    assert_unauthenticated(client.get(BALANCE, **bearer(raw_key)))


def test_no_credentials_is_401(client: Client):
    assert_unauthenticated(client.get(BALANCE))
    assert_unauthenticated(client.get(TRANSACTIONS))
    assert_unauthenticated(client.post(TOPUPS, {"amount": "25.00"}, content_type="application/json"))


def test_a_bad_key_is_refused_even_with_a_session(dev_client: Client):
    # The header decides alone: a script with a wrong key must not quietly act as the browser's user.
    assert_unauthenticated(dev_client.get(BALANCE, HTTP_AUTHORIZATION="Bearer sph_wrong"))


def test_session_writes_need_the_csrf_token(developer, fake_stripe, stripe_configured):
    client = Client(enforce_csrf_checks=True)
    client.force_login(developer)

    refused = client.post(TOPUPS, {"amount": "25.00"}, content_type="application/json")

    assert refused.status_code == 403
    assert refused.json()["message"].startswith("CSRF check failed")
    assert fake_stripe.calls == []

    client.get("/billing/")  # a page sets the csrftoken cookie, as in a browser
    token = client.cookies["csrftoken"].value
    accepted = client.post(TOPUPS, {"amount": "25.00"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201
    assert fake_stripe.calls == [(developer.id, 25 * USD)]


def test_session_reads_do_not_need_the_csrf_token(developer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(developer)
    assert client.get(BALANCE).status_code == 200


def test_api_key_writes_need_no_csrf_token(developer, fake_stripe, stripe_configured):
    client = Client(enforce_csrf_checks=True)
    _api_key, raw_key = api_key_create(user=developer, label="script")

    response = client.post(TOPUPS, {"amount": "10.00"}, content_type="application/json", **bearer(raw_key))

    assert response.status_code == 201
    assert fake_stripe.calls == [(developer.id, 10 * USD)]


def test_another_users_money_is_never_visible(client: Client, developer, outsider):
    fund(developer, 500 * USD, memo="owner's top-up")
    fund(outsider, 3 * USD, memo="outsider's top-up")
    _api_key, outsider_key = api_key_create(user=outsider, label="outsider")

    balance = client.get(BALANCE, **bearer(outsider_key)).json()
    transactions = client.get(TRANSACTIONS, **bearer(outsider_key)).json()

    assert balance["available_micros"] == 3 * USD
    assert [item["memo"] for item in transactions["items"]] == ["outsider's top-up"]
