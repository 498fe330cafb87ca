"""Rate limits per API key and route class (accounts.auth, core.ratelimit): every answer to a key
carries the RateLimit-* headers; over the limit, a 429 with `Retry-After`."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from accounts.api_keys import api_key_create
from accounts.auth import rate_class, rate_limits
from core.ratelimit import Rate, rate_limit_hit, rate_parse
from tests.deployments.conftest import fund, spec_text
from tests.factories import make_user

pytestmark = pytest.mark.django_db
WALLETS = "/api/v1/wallets"


@pytest.fixture
def owner(db):
    user = make_user(is_developer=True)
    fund(user, 500)
    return user


def get(client: Client, raw_key: str, path: str = WALLETS):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {raw_key}")


def post(client: Client, raw_key: str, path: str, body: dict):
    return client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_key}")


def test_reads_over_the_limit_are_429_with_retry_after_and_ratelimit_headers(client: Client, owner, settings):
    settings.API_KEY_RATE_LIMITS = {"read": "3/min"}
    _key, raw_key = api_key_create(user=owner, label="ci")

    answers = [get(client, raw_key) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [answer["RateLimit-Remaining"] for answer in answers] == ["2", "1", "0", "0"]
    for answer in answers:
        assert answer["RateLimit-Limit"] == "3"
        assert answer["RateLimit-Policy"] == '"read";q=3;w=60'
        reset = int(answer["RateLimit-Reset"])
        assert 1 <= reset <= 60
        assert answer["RateLimit"] == f'"read";r={answer["RateLimit-Remaining"]};t={reset}'
    refused = answers[-1]
    assert int(refused["Retry-After"]) == int(refused["RateLimit-Reset"])
    assert "Retry-After" not in answers[0]
    body = refused.json()
    assert body["message"].startswith("This key made 3 read requests in 60 s, its limit. Try again in ")
    assert body["extra"]["limit"] == 3 and body["extra"]["window_seconds"] == 60
    assert body["extra"]["retry_after_seconds"] == int(refused["Retry-After"])


def test_route_classes_and_keys_have_their_own_budgets(client: Client, owner, settings):
    settings.API_KEY_RATE_LIMITS = {"read": "1/min", "write": "2/min", "deploy": "1/min"}
    _key, raw_key = api_key_create(user=owner, label="ci")
    _other, other_key = api_key_create(user=owner, label="laptop")

    assert get(client, raw_key).status_code == 200
    assert get(client, raw_key).status_code == 429
    # Another key of the same account is not limited by the first one's requests.
    assert get(client, other_key).status_code == 200
    # Writes are another class: validation is a write, starting a deployment is the deploy class.
    spec = {"spec": spec_text()}
    assert post(client, raw_key, "/api/v1/deployments/validate", spec)["RateLimit-Policy"] == '"write";q=2;w=60'
    created = post(client, raw_key, "/api/v1/deployments", spec)
    assert created.status_code == 201 and created["RateLimit-Policy"] == '"deploy";q=1;w=60'
    again = post(client, raw_key, "/api/v1/deployments", spec)
    assert again.status_code == 429 and again["RateLimit-Policy"] == '"deploy";q=1;w=60'
    closed = post(client, raw_key, f"/api/v1/deployments/{created.json()['id']}/close", {})
    assert closed.status_code == 200 and closed["RateLimit-Remaining"] == "0"
    assert post(client, raw_key, "/api/v1/deployments/validate", spec).status_code == 429


def test_a_new_window_opens_when_the_last_one_ends(client: Client, owner, settings):
    settings.API_KEY_RATE_LIMITS = {"read": "2/1s"}
    _key, raw_key = api_key_create(user=owner, label="ci")

    assert [get(client, raw_key).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(1.1)

    again = get(client, raw_key)
    assert again.status_code == 200 and again["RateLimit-Remaining"] == "1"


def test_refused_requests_also_carry_the_headers_and_count(client: Client, owner, settings):
    settings.API_KEY_RATE_LIMITS = {"write": "2/min"}
    _key, raw_key = api_key_create(user=owner, label="reader", scopes=["read"])

    lacking = post(client, raw_key, "/api/v1/billing/topups", {"amount": "10.00"})
    invalid = post(client, raw_key, "/api/v1/deployments/validate", {"spec": 5})

    assert lacking.status_code == 403 and lacking["RateLimit-Remaining"] == "1"
    assert invalid.status_code == 422 and invalid["RateLimit-Remaining"] == "0"
    assert post(client, raw_key, "/api/v1/deployments/validate", {"spec": spec_text()}).status_code == 429


def test_sessions_and_requests_without_a_key_are_not_rate_limited_here(owner, settings):
    settings.API_KEY_RATE_LIMITS = {"read": "1/min"}
    session = Client()
    session.force_login(owner)

    answers = [session.get(WALLETS) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert "RateLimit-Limit" not in answers[0]
    assert "RateLimit-Limit" not in Client().get("/api/v1/offers")


def test_rate_limit_hit_counts_each_request_and_refuses_past_the_quota():
    rate = Rate(quota=3, window=60)
    states = [rate_limit_hit(bucket="test:shared", policy="read", rate=rate) for _ in range(4)]

    assert [state.remaining for state in states] == [2, 1, 0, 0]
    assert [state.allowed for state in states] == [True, True, True, False]
    assert states[-1].headers()["Retry-After"] == str(states[-1].reset)


@pytest.mark.parametrize(
    ("text", "quota", "window"),
    [("600/min", 600, 60), ("30/10s", 30, 10), ("5000/hour", 5000, 3600), ("2/day", 2, 86400), (" 7 / 2 m ", 7, 120)],
)
def test_rates_are_read_from_settings(text, quota, window):
    assert rate_parse(text) == Rate(quota=quota, window=window)


@pytest.mark.parametrize("text", ["", "600", "600/fortnight", "0/min", "-1/min", "10/0s", "1e3/min"])
def test_a_bad_rate_is_a_configuration_error(text):
    with pytest.raises(ImproperlyConfigured):
        rate_parse(text)


def test_an_unknown_route_class_in_the_settings_is_a_configuration_error(settings):
    settings.API_KEY_RATE_LIMITS = {"reads": "10/min"}
    with pytest.raises(ImproperlyConfigured, match="unknown route class reads"):
        rate_limits()


@pytest.mark.parametrize(
    ("method", "path", "route_class"),
    [
        ("GET", "deployments", "read"),
        ("HEAD", "billing/balance", "read"),
        ("POST", "deployments", "deploy"),
        ("POST", "deployments/7/redeploy", "deploy"),  # starts a deployment as much as POST deployments
        ("POST", "deployments/7/close", "write"),
        ("POST", "deployments/validate", "write"),
        ("PUT", "provider/prices", "write"),
    ],
)
def test_each_request_has_its_rate_class(method, path, route_class):
    assert rate_class(method, path) == route_class
