"""spheron_sdk.client against the live test server (pytest-django's live_server): no mocked HTTP.

Where the server cannot be made to misbehave on cue (a 429 then a 200, a dropped connection), a
small real HTTP server of the test's own stands in front of it or instead of it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from spheron_sdk.client import Client, RateLimit, rate_limit_from_headers, retry_after_seconds
from spheron_sdk.errors import (
    AuthError,
    InsufficientFunds,
    NetworkError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidationError,
)
from spheron_sdk.offer_query import QueryError

from accounts.api_keys import api_key_create
from marketplace.deployments import services as deployments
from marketplace.models import Deployment, DeploymentStatus
from tests.deployments import conftest as deployments_conftest
from tests.deployments.conftest import fund, spec_text
from tests.factories import make_node, make_provider, make_user
from tests.live_sqlite import sqlite_reads_do_not_wait

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
market = deployments_conftest.market  # the fixture: three RTX 4090 fizz nodes and an H100 box


@pytest.fixture(autouse=True)
def _sqlite_reads_do_not_wait(transactional_db):
    with sqlite_reads_do_not_wait():
        yield


@pytest.fixture
def owner(transactional_db):
    user = make_user(email="sdk-owner@example.test", is_developer=True)
    fund(user, 100)
    return user


def api_key(user) -> str:
    _key, raw = api_key_create(user=user, label="sdk tests")
    return raw


@pytest.fixture
def api(live_server, owner) -> Iterator[Client]:
    with Client(live_server.url, api_key(owner), timeout=20, retries=2, backoff=0.05) as client:
        yield client


def ids(offers) -> set[int]:
    return {offer["node_id"] for offer in offers}


# --- offers --------------------------------------------------------------------------------------------


def test_offer_search_each_operator_and_sort(api, market):
    cheap, good, dear, h100 = (market[name].id for name in ("cheap", "good", "dear", "h100"))
    cases = {
        "gpu_model=rtx4090": {cheap, good, dear},
        "gpu_model!=rtx4090": {h100},
        "uptime>0.95": {good, dear},
        "uptime>=0.99": {good, dear},
        "uptime<0.99": {cheap, h100},
        "uptime<=0.99": {cheap, dear, h100},
        "region in [us-west,eu-west]": {good, dear},
        "region notin [us-east]": {good, dear},
        "gpus>=2": {h100},
        "vram>24": {h100},
        "gpu_model=rtx4090 region in [us-east,eu-west] uptime>0.95": {dear},
        "tier<=3": {h100},
        "mode=provider": {h100},
    }
    for query, expected in cases.items():
        assert ids(api.offers.search(query)) == expected, query
    # price: compare with the offers' own exact prices
    prices = {offer["node_id"]: Decimal(offer["price_per_hour"]) for offer in api.offers.search("")}
    dear_price = prices[dear]
    assert ids(api.offers.search(f"price<{dear_price}")) == {n for n, p in prices.items() if p < dear_price}
    assert ids(api.offers.search(f"price>={dear_price}")) == {n for n, p in prices.items() if p >= dear_price}
    by_price = [offer["node_id"] for offer in api.offers.search("", sort="price-")]
    assert by_price == sorted(prices, key=lambda node: prices[node], reverse=True)
    assert [offer["node_id"] for offer in api.offers.search("", sort="uptime-")][0] == good
    assert [offer["node_id"] for offer in api.offers.search("", sort="price")][0] == cheap


def test_offer_query_errors_name_the_valid_choices(api, market):
    with pytest.raises(QueryError, match="valid fields: gpu_model, vram"):
        list(api.offers.search("colour=red"))
    with pytest.raises(QueryError, match="valid operators: = != < <= > >= in notin"):
        list(api.offers.search("vram~=24"))
    with pytest.raises(QueryError, match="sort by one of"):
        list(api.offers.search("", sort="colour"))


def test_pagination_iterates_every_page(api, market):
    one_by_one = [offer["node_id"] for offer in api.offers.search("", page_size=1)]
    assert len(one_by_one) == 4 == len(set(one_by_one))
    assert one_by_one == [offer["node_id"] for offer in api.offers.search("", page_size=200)]
    first = api.offers.page(limit=1)
    assert len(first["items"]) == 1 and first["next_cursor"]


def test_catalog_and_market_routes(api, market):
    offer = api.offers.get(market["h100"].id)
    assert offer["gpu_model"] == "h100" and offer["listed"] is True
    board = {row["gpu_model"]: row for row in api.market.board()}
    assert board["rtx4090"]["offers"] == 3
    assert "rtx4090" in {model["slug"] for model in api.market.gpu_models()}
    assert "us-east" in {region["code"] for region in api.market.regions()}


# --- errors and retries --------------------------------------------------------------------------------


def test_errors_are_typed_with_the_servers_message_and_fields(live_server, api, market):
    with pytest.raises(NotFound) as missing:
        api.deployments.get(987654)
    assert missing.value.status == 404
    with pytest.raises(ValidationError) as invalid:
        api.deployments.create(spec_text().replace("gpu: {units: 1", "gpu: {units: 0"))
    assert invalid.value.status == 422
    assert {"field": "services.app.resources.gpu.units", "message": "must be ≥ 1", "line": 10} in invalid.value.fields
    with pytest.raises(PermissionDenied, match="Become a provider first"):
        api.provider.nodes()
    poor = make_user(email="poor@example.test", is_developer=True)
    with Client(live_server.url, api_key(poor), retries=0) as broke, pytest.raises(InsufficientFunds) as funds:
        broke.deployments.create(spec_text())
    assert funds.value.status == 402 and funds.value.top_up_url
    with Client(live_server.url, "sph_not-a-key", retries=0) as wrong, pytest.raises(AuthError) as auth:
        wrong.billing.balance()
    assert auth.value.status == 401 and auth.value.message == "Authentication required."


def test_the_credential_throttle_is_rate_limited_and_its_retry_after_is_waited(live_server, settings):
    settings.AUTH_FAILURE_LIMIT = 1
    settings.AUTH_FAILURE_WINDOW_SECONDS = 2
    with Client(live_server.url, "sph_wrong", retries=0) as wrong:
        with pytest.raises(AuthError):
            wrong.billing.balance()
        with pytest.raises(RateLimited) as limited:
            wrong.billing.balance()
    assert limited.value.status == 429 and 1 <= limited.value.retry_after <= 2
    # With retries, the client waits out Retry-After and the next window answers again (a 401).
    with Client(live_server.url, "sph_wrong", retries=0) as probe:
        while True:  # blocked again (the window may have turned meanwhile)
            try:
                probe.billing.balance()
            except RateLimited:
                break
            except AuthError:
                continue
    with Client(live_server.url, "sph_wrong", retries=2) as patient:
        started = time.monotonic()
        with pytest.raises(AuthError):
            patient.billing.balance()
    assert time.monotonic() - started >= 0.9  # Retry-After is at least 1 s


class Scripted(ThreadingHTTPServer):
    """A real HTTP server that answers from a script of (status, headers, body), then 200s."""

    daemon_threads = True

    def __init__(self, script: list[tuple[int, dict[str, str], dict[str, Any]]]) -> None:
        self.script = list(script)
        self.seen: list[tuple[str, str, float]] = []
        super().__init__(("127.0.0.1", 0), ScriptedHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ScriptedHandler(BaseHTTPRequestHandler):
    server: Scripted

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path, time.monotonic()))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, headers, body = self.server.script.pop(0) if self.server.script else (200, {}, {"ok": True})
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def start(script):
        server = Scripted(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


LIMITED = {"message": "Slow down.", "extra": {"retry_after_seconds": 1}}


def test_a_429_is_retried_after_its_retry_after(scripted):
    server = scripted([(429, {"Retry-After": "1"}, LIMITED)])
    with Client(server.url, "sph_x", retries=2, backoff=0.01) as client:
        assert client.billing.balance() == {"ok": True}
    (_m, _p, first), (_m2, _p2, second) = server.seen
    assert second - first >= 0.95  # waited what the server said, not the 10 ms backoff


def test_a_retry_after_beyond_the_bound_is_raised_at_once(scripted):
    server = scripted([(429, {"Retry-After": "120"}, LIMITED)])
    with Client(server.url, "sph_x", retries=3, max_retry_after=5) as client, pytest.raises(RateLimited) as limited:
        client.billing.balance()
    assert limited.value.retry_after == 120 and len(server.seen) == 1


def test_server_errors_are_retried_for_reads_not_for_writes(scripted):
    oops = (500, {}, {"message": "Boom.", "extra": {}})
    server = scripted([oops, (503, {}, {"message": "Busy.", "extra": {}})])
    with Client(server.url, "sph_x", retries=2, backoff=0.01) as client:
        assert client.billing.balance() == {"ok": True}
    assert len(server.seen) == 3
    server = scripted([oops])
    with Client(server.url, "sph_x", retries=2, backoff=0.01) as client, pytest.raises(ServerError, match="Boom"):
        client.deployments.close(1)  # a POST that may have been applied: not repeated
    assert len(server.seen) == 1
    server = scripted([oops, oops, oops])
    with Client(server.url, "sph_x", retries=2, backoff=0.01) as client, pytest.raises(ServerError):
        client.billing.balance()
    assert len(server.seen) == 3


def test_an_unreachable_server_is_a_network_error():
    with Client("http://127.0.0.1:9", "sph_x", retries=1, backoff=0.01) as client, pytest.raises(NetworkError):
        client.billing.balance()


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


# --- deployments ---------------------------------------------------------------------------------------


def _match(deployment_id: int):
    deployment = Deployment.objects.get(id=deployment_id)
    return deployments.match_order(order_id=deployment.orders.get().id).lease


def _log(lease, *lines: str) -> None:
    assert deployments.lease_events(
        lease.node_id, lease.id, [{"type": "log", "stream": "stdout", "lines": list(lines)}]
    )


def test_deployment_create_get_events_logs_close(api, market):
    check = api.deployments.validate(spec_text(price="0.50", duration="2h"))
    assert check["valid"] and check["estimate"]["hold"] == "1.000000" and check["enough_credits"] is True
    assert not Deployment.objects.exists()  # the dry run created nothing
    created = api.deployments.create(spec_text(price="0.50", duration="2h"))
    assert created["status"] == "pending" and created["estimate"]["max_total"] == "1.000000"
    lease = _match(created["id"])
    got = api.deployments.get(created["id"])
    assert got["status"] == DeploymentStatus.MATCHED and got["lease"]["node_id"] == lease.node_id
    assert [item["id"] for item in api.deployments.list()] == [created["id"]]
    _log(lease, "one", "two", "three")
    assert [line["line"] for line in api.deployments.iter_logs(created["id"])] == ["one", "two", "three"]
    assert [line["line"] for line in api.deployments.tail(created["id"], 2)] == ["two", "three"]
    assert api.deployments.verify(created["id"])["ok"] is True
    closed = api.deployments.close(created["id"])
    assert closed["status"] == "closed" and closed["close_reason"] == "user_closed"
    kinds = [event["kind"] for event in api.deployments.events(created["id"])]
    assert kinds[0] == "created" and "matched" in kinds and kinds[-1] == "closed"


def test_deployment_list_pages(api, market):
    made = [api.deployments.create(spec_text(duration="1h"))["id"] for _ in range(3)]
    assert [item["id"] for item in api.deployments.list(page_size=1)] == list(reversed(made))
    assert [item["id"] for item in api.deployments.list(status="pending", page_size=2)] == list(reversed(made))


class DroppingProxy(ThreadingHTTPServer):
    """Forwards to the live server, but hangs up without an answer on the `drop`-th logs request."""

    daemon_threads = True

    def __init__(self, upstream: str, drop: set[int]) -> None:
        self.upstream = upstream
        self.drop = drop
        self.log_requests = 0
        self.dropped = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), DroppingHandler)


class DroppingHandler(BaseHTTPRequestHandler):
    server: DroppingProxy

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if "/logs" in self.path:
            with self.server.lock:
                self.server.log_requests += 1
                drop = self.server.log_requests in self.server.drop
                self.server.dropped += drop
            if drop:
                self.close_connection = True
                return  # no status line: the client sees the connection drop
        answer = httpx.get(self.server.upstream + self.path, headers={"Authorization": self.headers["Authorization"]})
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)


def test_followed_logs_resume_after_a_dropped_connection_without_loss_or_repeat(live_server, owner, market):
    key = api_key(owner)
    with Client(live_server.url, key) as setup:
        created = setup.deployments.create(spec_text(duration="1h"))
    lease = _match(created["id"])
    _log(lease, "a1", "a2", "a3")
    proxy = DroppingProxy(live_server.url, drop={2, 3})
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        # retries=0: the drop reaches the follower itself, which must pick up after the last line it gave.
        with Client(f"http://127.0.0.1:{proxy.server_address[1]}", key, retries=0, backoff=0.01) as client:
            follower = client.deployments.iter_logs(created["id"], follow=True, poll_interval=0.05)
            got = [next(follower)["line"] for _ in range(3)]
            _log(lease, "b1", "b2")
            got += [next(follower)["line"] for _ in range(2)]
            with Client(live_server.url, key) as closer:
                closer.deployments.close(created["id"])
            _log(lease, "c1")  # the agent's last words after the close still arrive
            got += [line["line"] for line in follower]  # ends once the deployment has ended
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert got == ["a1", "a2", "a3", "b1", "b2", "c1"]
    assert proxy.dropped == 2


# --- money, chains, wallets, providers --------------------------------------------------------------------


def test_billing_chains_wallets(api, owner):
    balance = api.billing.balance()
    assert balance["available"] == "100.000000" and balance["reserved_micros"] == 0
    assert [item["kind"] for item in api.billing.transactions(page_size=1)]  # the test top-up, at least
    assert isinstance(api.chains.list(), list)
    assert list(api.billing.deposits()) == []
    assert api.wallets.list()["current"] == {"stake": None, "payout": None}
    with pytest.raises(ValidationError) as bad:
        api.billing.topup("1.234")
    assert bad.value.fields and bad.value.fields[0]["field"] == "amount"


def test_provider_nodes_tokens_rewards(live_server):
    profile = make_provider(display_name="SDK Provider")
    node = make_node(provider=profile)
    with Client(live_server.url, api_key(profile.user)) as api:
        assert [row["id"] for row in api.provider.nodes()] == [node.id]
        token = api.provider.create_token("rack 2", mode="fizz")
        assert token["token"] and token["label"] == "rack 2"
        assert [row["id"] for row in api.provider.tokens()] == [token["id"]]
        assert api.provider.revoke_token(token["id"])["revoked_at"]
        assert list(api.provider.node_rewards(node.id)) == []
        assert api.provider.rewards()["era_count"] == 0
        assert list(api.provider.iter_reward_eras()) == []
        with pytest.raises(NotFound):
            list(api.provider.node_rewards(987654))


def test_provider_stake_and_earnings(live_server):
    from providers import services as provider_services

    profile = make_provider(display_name="SDK Staker")
    make_node(provider=profile, name="rig", gpu_count=2)
    provider_services.stake_record(provider=profile, kind="stake", amount="150", reason="sdk test")
    with Client(live_server.url, api_key(profile.user)) as api:
        stake = api.provider.stake()
        assert stake["staked_spon"] == "150" and stake["units"] == 2
        assert stake["history"][0]["amount_spon"] == "150" and stake["history"][0]["reason"] == "sdk test"
        earned = api.provider.earnings(days=7)
        assert earned["days"] == 7 and len(earned["items"]) == 7 and earned["totals"]["total"] == "0.000000"
        with pytest.raises(ValidationError) as bad:
            api.provider.earnings(days=91)
        assert bad.value.fields[0]["field"] == "days"
        with pytest.raises(NotFound):
            api.provider.earnings(node=987654)


def test_provider_stake_refuses_a_renter(api):
    with pytest.raises(PermissionDenied) as refused:
        api.provider.stake()
    assert refused.value.message == "Become a provider first." and refused.value.status == 403


# --- the model store -----------------------------------------------------------------------------------


def test_templates_list_get_render_and_deploy_the_pinned_spec(api, market):
    slugs = [item["slug"] for item in api.templates.list()]
    assert "jupyter-pytorch" in slugs and "vllm-8b" in slugs
    jupyter = api.templates.get("jupyter-pytorch")
    assert [var["name"] for var in jupyter["env_vars"]] == ["JUPYTER_TOKEN"]
    rendered = api.templates.render("jupyter-pytorch", env={"JUPYTER_TOKEN": "s3cret"})
    assert rendered["offer"]["node_id"] == market["cheap"].id  # the cheapest 4090 that fits
    assert f"node: {market['cheap'].id}" in rendered["pinned_spec"]
    created = api.deployments.create(rendered["pinned_spec"])
    assert api.deployments.get(created["id"])["status"] == "pending"
    pinned = api.templates.render("jupyter-pytorch", env={"JUPYTER_TOKEN": "x"}, node_id=market["dear"].id)
    assert pinned["offer"]["node_id"] == market["dear"].id
    with pytest.raises(ValidationError) as missing:
        api.templates.render("ubuntu-ssh")
    assert [field["field"] for field in missing.value.fields] == ["env.SSH_PUBLIC_KEY"]
    assert "SSH public key is required" in missing.value.message
    with pytest.raises(NotFound):
        api.templates.get("no-such-template")
    with pytest.raises(NotFound):
        api.templates.get("../deployments")  # one path segment, encoded: not another route


# --- rate limits -----------------------------------------------------------------------------------------


def test_the_rate_limit_headers_are_read_into_last_rate_limit_and_the_429(live_server, owner, settings):
    settings.API_KEY_RATE_LIMITS = {"read": "3/min", "write": "120/min", "deploy": "30/min"}
    with Client(live_server.url, api_key(owner), retries=0) as api:
        assert api.last_rate_limit is None
        before = time.time()
        api.billing.balance()
        first = api.last_rate_limit
        assert (first.policy, first.limit, first.window, first.remaining) == ("read", 3, 60, 2)
        assert 1 <= first.reset <= 60 and before <= first.reset_at - first.reset <= time.time()
        api.billing.balance()
        api.billing.balance()
        assert api.last_rate_limit.remaining == 0
        with pytest.raises(RateLimited) as limited:
            api.billing.balance()
    limit = limited.value.rate_limit
    assert limit.policy == "read" and limit.remaining == 0 and limit.limit == 3
    assert limited.value.retry_after == limit.reset and limited.value.to_dict()["rate_limit"]["remaining"] == 0


def test_the_earlier_rate_limit_fields_are_read_when_only_they_are_sent(scripted):
    old_style = {"RateLimit-Limit": "100", "RateLimit-Remaining": "7", "RateLimit-Reset": "30"}
    server = scripted([(200, old_style, {"ok": True}), (200, {}, {"ok": True})])
    with Client(server.url, "sph_x") as client:
        client.billing.balance()
        limit = client.last_rate_limit
        assert (limit.policy, limit.limit, limit.remaining, limit.reset, limit.window) == (None, 100, 7, 30, None)
        client.billing.balance()  # an answer without the fields keeps the last one known
        assert client.last_rate_limit is limit


def test_rate_limit_from_headers_reads_the_structured_fields():
    parsed = rate_limit_from_headers(
        {"RateLimit-Policy": '"deploy";q=30;w=60, "burst";q=5;w=1', "RateLimit": '"deploy";r=29;t=41'}, now=1000.0
    )
    assert parsed == RateLimit(policy="deploy", limit=30, remaining=29, reset=41, window=60, received_at=1000.0)
    assert parsed.reset_at == 1041.0
    assert rate_limit_from_headers({}) is None
    junk = rate_limit_from_headers({"RateLimit": '"read";r=-1;t=soon', "RateLimit-Limit": "x"}, now=0)
    assert junk == RateLimit(policy="read", limit=None, remaining=None, reset=None, window=None, received_at=0)
