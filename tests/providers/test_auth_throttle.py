"""Failed API-key, node-token and node-secret authentications are limited per client address: after
AUTH_FAILURE_LIMIT failures in a window, the address is answered 429 with Retry-After: API keys and
node tokens are not even looked at until the window ends (guessing stops), while a healthy agent's
node secret is never refused; other addresses are not affected."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from tests.factories import make_user
from tests.providers.conftest import _TRANSPORT, hardware_report, post

pytestmark = pytest.mark.django_db
LIMIT = 5
BALANCE = "/api/v1/billing/balance"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.AUTH_FAILURE_LIMIT = LIMIT
    settings.AUTH_FAILURE_WINDOW_SECONDS = 300
    settings.TRUSTED_PROXIES = []  # the counters live in the configured cache (Redis in CI), cleared per test


def _bearer(value: str, address: str = "203.0.113.7") -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {value}", "REMOTE_ADDR": address}


def _assert_limited(response) -> None:
    assert response.status_code == 429, response.content
    body = response.json()
    assert set(body) == {"message", "extra"} and "Too many failed" in body["message"]
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 300
    assert body["extra"]["retry_after_seconds"] == retry_after


def _registered_node(client: Client, token: str) -> tuple[int, str]:
    response = post(client, "/api/v1/nodes/register", hardware_report(), token)
    assert response.status_code in (200, 201), response.content
    body = response.json()
    return body["node_id"], body["node_secret"]


def test_guessing_api_keys_is_stopped_for_the_window_and_other_addresses_are_not_affected(client: Client):
    user = make_user(is_developer=True)
    _row, raw_key = api_key_create(user=user, label="ci")

    for attempt in range(LIMIT):
        assert client.get(BALANCE, **_bearer(f"sph_guess{attempt:040d}")).status_code == 401
    _assert_limited(client.get(BALANCE, **_bearer("sph_guess" + "x" * 38)))
    _assert_limited(client.get(BALANCE, **_bearer("not-even-a-key")))

    # Not even the right key gets an answer from a blocked address: a guess cannot be told right.
    _assert_limited(client.get(BALANCE, **_bearer(raw_key)))
    # Another address has its own allowance, and the key works there.
    assert client.get(BALANCE, **_bearer("sph_wrong", address="198.51.100.9")).status_code == 401
    assert client.get(BALANCE, **_bearer(raw_key, address="198.51.100.9")).status_code == 200


def test_a_valid_api_key_is_not_counted(client: Client):
    user = make_user(is_developer=True)
    _row, raw_key = api_key_create(user=user, label="ci")

    for _ in range(LIMIT + 2):
        assert client.get(BALANCE, **_bearer(raw_key)).status_code == 200
    assert client.get(BALANCE, **_bearer("sph_wrong")).status_code == 401


def test_guessing_node_secrets_is_limited_but_healthy_agents_keep_heartbeating(
    client: Client, token, heartbeat_transport
):
    node_id, secret = _registered_node(client, token)
    address = "203.0.113.7"

    def heartbeat(credential: str, remote: str = address):
        if _TRANSPORT["mode"] == "wsgi":
            from tests.providers.conftest import wsgi_request

            return wsgi_request(
                f"/api/v1/nodes/{node_id}/heartbeat",
                b'{"agent_version": "0.1.0"}',
                {"HTTP_AUTHORIZATION": f"Bearer {credential}"},
                REMOTE_ADDR=remote,
            )
        return client.post(
            f"/api/v1/nodes/{node_id}/heartbeat",
            data={"agent_version": "0.1.0"},
            content_type="application/json",
            **_bearer(credential, remote),
        )

    for attempt in range(LIMIT):
        assert heartbeat(f"nsk_{node_id}_guess{attempt}").status_code == 401
    limited = heartbeat(f"nsk_{node_id}_guess-more")
    _assert_limited(limited)
    # Lease events and other secret-authenticated routes share the address's allowance.
    events = client.post(
        "/api/v1/leases/1/events", data={"events": []}, content_type="application/json", **_bearer("nsk_1_x", address)
    )
    _assert_limited(events)

    # The node's own agent, even behind the same address, is never refused.
    for _ in range(LIMIT + 2):
        assert heartbeat(secret).status_code == 200
    assert heartbeat(f"nsk_{node_id}_guess", remote="198.51.100.9").status_code == 401


def test_guessing_node_tokens_is_limited(client: Client, token):
    for attempt in range(LIMIT):
        wrong = "fzt_" + f"{attempt}" * 43 if attempt % 2 else "garbage"
        response = client.post(
            "/api/v1/nodes/register", data=hardware_report(), content_type="application/json", **_bearer(wrong)
        )
        assert response.status_code == 401
    response = client.post(
        "/api/v1/nodes/register", data=hardware_report(), content_type="application/json", **_bearer("fzt_" + "z" * 43)
    )
    _assert_limited(response)
    # The real token is not looked at either until the window ends; elsewhere it registers the machine.
    blocked = client.post(
        "/api/v1/nodes/register", data=hardware_report(), content_type="application/json", **_bearer(token)
    )
    _assert_limited(blocked)
    ok = client.post(
        "/api/v1/nodes/register",
        data=hardware_report(),
        content_type="application/json",
        **_bearer(token, address="198.51.100.9"),
    )
    assert ok.status_code == 201


def test_the_client_address_behind_a_trusted_proxy_is_the_forwarded_one(client: Client, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.2"]

    def attempt(forwarded_for: str, remote: str = "10.0.0.2"):
        return client.get(BALANCE, HTTP_X_FORWARDED_FOR=forwarded_for, **_bearer("sph_wrong", remote))

    # A client cannot dodge the limit by sending its own X-Forwarded-For: the proxy appends the real one.
    for attempt_number in range(LIMIT):
        assert attempt(f"192.0.2.{attempt_number}, 203.0.113.7").status_code == 401
    _assert_limited(attempt("192.0.2.200, 203.0.113.7"))
    assert attempt("203.0.113.8").status_code == 401
    # From an untrusted peer, X-Forwarded-For is ignored: the peer itself is counted.
    for _ in range(LIMIT):
        assert attempt("203.0.113.9", remote="198.51.100.1").status_code == 401
    _assert_limited(attempt("203.0.113.10", remote="198.51.100.1"))


def test_ipv6_clients_are_counted_per_64(client: Client):
    for attempt in range(LIMIT):
        assert client.get(BALANCE, **_bearer("sph_wrong", f"2001:db8:1:2::{attempt + 1:x}")).status_code == 401
    _assert_limited(client.get(BALANCE, **_bearer("sph_wrong", "2001:db8:1:2:ffff::1")))
    assert client.get(BALANCE, **_bearer("sph_wrong", "2001:db8:1:3::1")).status_code == 401
