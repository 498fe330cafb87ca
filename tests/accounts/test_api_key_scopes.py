"""API keys with scopes, a daily spend cap and allowed addresses (issue 23 part 3): what each scope
lets a key do through /api/v1, the cap on what the deployments a key starts may hold, the client
networks a key works from, and revocation that takes effect at the next request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from accounts.api_keys import api_key_create, api_key_revoke
from accounts.models import ApiKey, ApiKeySpend
from core import clock
from marketplace.deployments import services as deployments
from marketplace.models import Deployment
from providers.models import NodeToken
from tests.deployments.conftest import fund, spec_text
from tests.factories import make_provider, make_user

pytestmark = pytest.mark.django_db
USD = 1_000_000
SCOPES = ["read", "deploy", "billing", "provider", "full"]
ADDRESS = "0x" + "ab" * 20


@pytest.fixture
def owner(db):
    user = make_user(is_developer=True, is_provider=True)
    make_provider(user=user)
    fund(user, 500)
    return user


def bearer(raw_key: str, **extra) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}", **extra}


def call(client: Client, raw_key: str, method: str, path: str, body: dict | None = None, **extra):
    if method == "GET":
        return client.get(path, **bearer(raw_key, **extra))
    return client.post(
        path, body if body is not None else {}, content_type="application/json", **bearer(raw_key, **extra)
    )


def assert_lacks(response, scope: str) -> None:
    assert response.status_code == 403, response.content
    assert response.json()["message"] == f"This key lacks the '{scope}' scope."
    assert response.json()["extra"]["required_scope"] == scope


# (name, method, path, body, status when allowed, the scope a refusal names, scopes that allow it)
ROUTES = [
    ("balance", "GET", "/api/v1/billing/balance", None, 200, "read", {"read", "billing", "full"}),
    ("deployments", "GET", "/api/v1/deployments", None, 200, "read", {"read", "deploy", "full"}),
    ("provider nodes", "GET", "/api/v1/provider/nodes", None, 200, "read", {"read", "provider", "full"}),
    ("wallets", "GET", "/api/v1/wallets", None, 200, "read", {"read", "full"}),
    ("validate", "POST", "/api/v1/deployments/validate", "SPEC", 200, "read", {"read", "deploy", "full"}),
    ("create", "POST", "/api/v1/deployments", "SPEC", 201, "deploy", {"deploy", "full"}),
    ("close", "POST", "/api/v1/deployments/{deployment}/close", None, 200, "deploy", {"deploy", "full"}),
    # An empty body: the check is refused as input (422) once the key may make it at all.
    ("deposit check", "POST", "/api/v1/billing/deposits/check", None, 422, "billing", {"billing", "full"}),
    ("node token", "POST", "/api/v1/provider/tokens", {"label": "rack 1"}, 201, "provider", {"provider", "full"}),
    (
        "wallet nonce",
        "POST",
        "/api/v1/wallets/nonce",
        {"address": ADDRESS, "chain_id": 8453, "purpose": "payout"},
        200,
        "full",
        {"full"},
    ),
]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("route", ROUTES, ids=[route[0] for route in ROUTES])
def test_each_scope_is_allowed_its_routes_and_refused_the_others(client: Client, owner, scope, route):
    name, method, path, body, ok_status, refusal_names, allowed = route
    deployment = deployments.deployment_create(user=owner, source=spec_text())
    path = path.format(deployment=deployment.id)
    if body == "SPEC":
        body = {"spec": spec_text()}
    _key, raw_key = api_key_create(user=owner, label=f"{scope} key", scopes=[scope])
    deployments_before = Deployment.objects.count()
    tokens_before = NodeToken.objects.count()

    response = call(client, raw_key, method, path, body)

    if scope in allowed:
        assert response.status_code == ok_status, response.content
    else:
        assert_lacks(response, refusal_names)
        # A refused write changed nothing.
        assert Deployment.objects.count() == deployments_before
        assert NodeToken.objects.count() == tokens_before
        deployment.refresh_from_db()
        assert deployment.status != "closed"


def test_a_key_with_several_scopes_has_each_of_them(client: Client, owner):
    _key, raw_key = api_key_create(user=owner, label="ci", scopes=["deploy", "billing"])

    assert call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()}).status_code == 201
    assert call(client, raw_key, "GET", "/api/v1/billing/balance").status_code == 200
    assert_lacks(call(client, raw_key, "GET", "/api/v1/provider/nodes"), "read")
    assert_lacks(call(client, raw_key, "POST", "/api/v1/provider/tokens", {"label": "x"}), "provider")


def test_scopes_do_not_limit_the_browser_session(owner):
    session = Client()
    session.force_login(owner)
    assert session.get("/api/v1/wallets").status_code == 200
    assert (
        session.post("/api/v1/provider/tokens", {"label": "rack"}, content_type="application/json").status_code == 201
    )


def test_keys_made_without_scopes_have_full_access(client: Client, owner):
    api_key, raw_key = api_key_create(user=owner, label="old script")

    assert api_key.scopes == ["full"]
    assert call(client, raw_key, "POST", "/api/v1/wallets/nonce", ROUTES[-1][3]).status_code == 200


# --- The account page ----------------------------------------------------------------------------


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def test_the_page_creates_a_key_with_scopes_a_cap_and_addresses_and_lists_them(owner_client: Client, owner):
    response = owner_client.post(
        "/account/api-keys/",
        {
            "label": "CI deploys",
            "access": "custom",
            "scopes": ["deploy", "read"],
            "daily_spend_cap": "50.00",
            "allowed_networks": "203.0.113.7, 198.51.100.0/24\n2001:db8::/32",
        },
    )

    assert response.status_code == 200
    api_key = ApiKey.objects.get(user=owner)
    assert api_key.scopes == ["deploy", "read"]
    assert api_key.daily_spend_cap == 50 * USD
    assert api_key.allowed_networks == ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"]
    listing = owner_client.get("/account/api-keys/").content.decode()
    assert "deploy, read" in listing
    assert "$50.00 ($0.00)" in listing
    assert "203.0.113.7, 198.51.100.0/24, 2001:db8::/32" in listing


@pytest.mark.parametrize(
    ("access", "scopes", "expected"),
    [("full", ["deploy"], ["full"]), ("read", [], ["read"]), ("custom", ["full"], None), ("custom", [], None)],
)
def test_the_page_reads_the_access_choice(owner_client: Client, owner, access, scopes, expected):
    response = owner_client.post("/account/api-keys/", {"label": "k", "access": access, "scopes": scopes})

    api_key = ApiKey.objects.filter(user=owner).first()
    if expected is None:
        assert api_key is None
        page = response.content.decode()
        assert "Select a valid choice" in page or "Choose at least one scope." in page
    else:
        assert api_key.scopes == expected


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("daily_spend_cap", "0", "A daily cap is above zero"),
        ("daily_spend_cap", "-5", "Enter the daily cap in dollars"),
        ("daily_spend_cap", "12.345", "Enter the daily cap in dollars"),
        ("daily_spend_cap", "1e3", "Enter the daily cap in dollars"),
        ("allowed_networks", "203.0.113.7/24", "has host bits set: did you mean 203.0.113.0/24?"),
        ("allowed_networks", "localhost", "is not an IP address or a CIDR network"),
        ("allowed_networks", " ".join(f"10.0.0.{n}" for n in range(21)), "at most 20 addresses"),
    ],
)
def test_the_page_refuses_a_bad_cap_or_address_with_a_message(owner_client: Client, owner, field, value, message):
    response = owner_client.post("/account/api-keys/", {"label": "k", "access": "full", field: value})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ApiKey.objects.filter(user=owner).exists()


# --- Allowed addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("203.0.113.7", True),
        ("198.51.100.200", True),
        ("::ffff:198.51.100.9", True),  # IPv4 mapped into IPv6 is the IPv4 address
        ("2001:db8:1::5", True),
        ("203.0.113.8", False),
        ("192.0.2.1", False),
        ("2001:db9::1", False),
    ],
)
def test_a_key_works_only_from_its_allowed_networks(client: Client, owner, address, allowed):
    _key, raw_key = api_key_create(
        user=owner, label="ci", allowed_networks=["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"]
    )

    response = call(client, raw_key, "GET", "/api/v1/billing/balance", REMOTE_ADDR=address)

    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        message = response.json()["message"]
        assert message.startswith("This key may not be used from ") and "API keys page" in message


def test_behind_a_trusted_proxy_the_forwarded_address_is_checked(client: Client, owner, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    _key, raw_key = api_key_create(user=owner, label="ci", allowed_networks=["203.0.113.7"])

    through_proxy = {"REMOTE_ADDR": "10.0.0.1"}
    allowed = call(client, raw_key, "GET", "/api/v1/wallets", HTTP_X_FORWARDED_FOR="203.0.113.7", **through_proxy)
    # The client may put anything left of the proxy's own entry; only the right-most untrusted hop counts.
    spoofed = call(
        client, raw_key, "GET", "/api/v1/wallets", HTTP_X_FORWARDED_FOR="203.0.113.7, 192.0.2.1", **through_proxy
    )

    assert allowed.status_code == 200
    assert spoofed.status_code == 403
    assert spoofed.json()["extra"]["client_address"] == "192.0.2.1"


# --- Revocation ---------------------------------------------------------------------------------


def test_revoking_on_the_page_stops_the_key_at_the_next_request(client: Client, owner_client: Client, owner):
    api_key, raw_key = api_key_create(user=owner, label="leaked")
    assert call(client, raw_key, "GET", "/api/v1/billing/balance").status_code == 200

    owner_client.post(f"/account/api-keys/{api_key.id}/revoke/")

    refused = call(client, raw_key, "GET", "/api/v1/billing/balance")
    assert refused.status_code == 401
    assert call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()}).status_code == 401
    assert not Deployment.objects.filter(owner=owner).exists()


def test_staff_revoke_keys_from_the_admin(client: Client, owner):
    api_key, raw_key = api_key_create(user=owner, label="leaked")
    _other, other_raw = api_key_create(user=owner, label="kept")
    staff = make_user(is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(staff)

    listing = admin.get("/admin/accounts/apikey/")
    response = admin.post(
        "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [api_key.id]}, follow=True
    )

    assert listing.status_code == 200 and "leaked" in listing.content.decode()
    assert "1 key(s) revoked." in response.content.decode()
    assert call(client, raw_key, "GET", "/api/v1/wallets").status_code == 401
    assert call(client, other_raw, "GET", "/api/v1/wallets").status_code == 200


def test_a_key_shows_when_it_was_last_used(client: Client, owner_client: Client, owner):
    api_key, raw_key = api_key_create(user=owner, label="ci")
    call(client, raw_key, "GET", "/api/v1/wallets")

    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    assert f"{api_key.last_used_at:%Y-%m-%d %H:%M}" in owner_client.get("/account/api-keys/").content.decode()


# --- The daily spend cap ------------------------------------------------------------------------


def _hold(spec: str) -> int:
    return deployments.estimate(deployments.spec_from_source(spec))["hold_micros"]


def test_a_key_may_not_start_deployments_that_would_hold_more_than_its_daily_cap(client: Client, owner, midday):
    hold = _hold(spec_text())  # $0.50/h for the 24 h hold: $12.00
    api_key, raw_key = api_key_create(user=owner, label="ci", scopes=["deploy"], daily_spend_cap=2 * hold + hold // 2)

    first = call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()})
    second = call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()})
    third = call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()})

    assert (first.status_code, second.status_code) == (201, 201)
    assert third.status_code == 403
    body = third.json()
    assert body["message"].startswith(
        "This key may commit at most $30.00 a day to deployments; it has committed $24.00"
    )
    assert body["extra"]["spent_today_micros"] == 2 * hold
    assert body["extra"]["needed_micros"] == hold
    assert body["extra"]["resets_at"] == (midday.replace(hour=0) + timedelta(days=1)).isoformat()
    assert Deployment.objects.filter(owner=owner).count() == 2
    assert ApiKeySpend.objects.get(api_key=api_key).amount == 2 * hold
    # The account itself may still deploy: the cap is the key's, not the account's.
    session = Client()
    session.force_login(owner)
    assert (
        session.post("/api/v1/deployments", {"spec": spec_text()}, content_type="application/json").status_code == 201
    )


def test_the_cap_counts_again_from_zero_the_next_utc_day(client: Client, owner, midday):
    hold = _hold(spec_text())
    _key, raw_key = api_key_create(user=owner, label="ci", scopes=["deploy"], daily_spend_cap=hold)
    assert call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()}).status_code == 201
    assert call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()}).status_code == 403

    clock.advance(timedelta(hours=13).total_seconds())  # 01:00 UTC the next day

    assert call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()}).status_code == 201


def test_a_deployment_that_is_not_created_does_not_count_against_the_cap(client: Client, midday):
    poor = make_user(is_developer=True)
    fund(poor, 13)  # one $12 hold fits, two do not
    hold = _hold(spec_text())
    api_key, raw_key = api_key_create(user=poor, label="ci", scopes=["deploy"], daily_spend_cap=3 * hold)

    bad_spec = call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text(model="no-such-gpu")})
    created = call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()})
    short = call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()})
    not_json = client.post("/api/v1/deployments", "{", content_type="application/json", **bearer(raw_key))

    assert (bad_spec.status_code, created.status_code, short.status_code) == (422, 201, 402)
    assert not_json.status_code in (400, 422)
    assert ApiKeySpend.objects.get(api_key=api_key).amount == hold


def test_a_key_without_a_cap_is_not_counted(client: Client, owner):
    api_key, raw_key = api_key_create(user=owner, label="ci", scopes=["deploy"])

    assert call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()}).status_code == 201
    assert not ApiKeySpend.objects.filter(api_key=api_key).exists()


def test_the_page_shows_what_a_capped_key_committed_today(client: Client, owner_client: Client, owner, midday):
    _key, raw_key = api_key_create(user=owner, label="ci", scopes=["deploy"], daily_spend_cap=100 * USD)
    call(client, raw_key, "POST", "/api/v1/deployments", {"spec": spec_text()})

    assert "$100.00 ($12.00)" in owner_client.get("/account/api-keys/").content.decode()


def test_revoking_through_the_service_is_seen_by_the_next_request(client: Client, owner):
    api_key, raw_key = api_key_create(user=owner, label="ci", scopes=["read"])
    assert call(client, raw_key, "GET", "/api/v1/wallets").status_code == 200

    api_key_revoke(user=owner, key_id=api_key.id)

    assert call(client, raw_key, "GET", "/api/v1/wallets").status_code == 401
