"""Backoff and the HTTP client's classification of failures."""

from __future__ import annotations

import json
import random
import socket
import threading

import httpx
import pytest
from spheron_sdk.fizz.client import (
    ApiError,
    Backoff,
    FizzClient,
    Interrupted,
    TransientError,
    backoff_cap_from_env,
    call_with_retry,
)


def test_full_jitter_delays_stay_within_bounds() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(1234))
    for attempt in range(12):
        ceiling = min(60.0, 1.0 * 2**attempt)
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter: spread over the whole range, not clustered at the ceiling.
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9


def test_backoff_is_reproducible_with_a_seed_and_survives_huge_attempts() -> None:
    first = [Backoff(cap=60, rng=random.Random(7)).delay(n) for n in range(10)]
    second = [Backoff(cap=60, rng=random.Random(7)).delay(n) for n in range(10)]
    assert first == second
    assert 0 <= Backoff(cap=60, rng=random.Random(7)).delay(5000) <= 60


def test_env_cap_only_lowers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIZZ_BACKOFF_CAP", "0.5")
    assert backoff_cap_from_env() == 0.5
    assert all(Backoff(rng=random.Random(3)).delay(10) <= 0.5 for _ in range(50))
    monkeypatch.setenv("FIZZ_BACKOFF_CAP", "600")
    assert backoff_cap_from_env() == 60.0
    monkeypatch.setenv("FIZZ_BACKOFF_CAP", "soon")
    assert backoff_cap_from_env() == 60.0


def client_for(handler) -> FizzClient:
    return FizzClient("http://fizz.test", transport=httpx.MockTransport(handler))


def test_request_shape_and_success() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "online"})

    with client_for(handler) as client:
        assert client.heartbeat(42, "nsk_42_x", {"sequence": 1}) == {"status": "online"}
    (request,) = seen
    assert request.url.path == "/api/v1/nodes/42/heartbeat"
    assert request.headers["Authorization"] == "Bearer nsk_42_x"
    assert request.headers["User-Agent"].startswith("fizz/0.1.0")
    assert json.loads(request.read()) == {"sequence": 1}


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_transient(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Retry-After": "3"}, text="<html>busy</html>")

    with client_for(handler) as client, pytest.raises(TransientError) as info:
        client.register("fzt_x", {})
    assert str(status) in info.value.reason
    assert info.value.retry_after == 3.0


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_4xx_are_final_with_the_servers_message(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "token in use by node 9", "extra": {"node_id": 9}})

    with client_for(handler) as client, pytest.raises(ApiError) as info:
        client.register("fzt_x", {})
    assert (info.value.status, info.value.message, info.value.extra) == (
        status,
        "token in use by node 9",
        {"node_id": 9},
    )


def test_non_json_error_body_still_gives_a_message() -> None:
    with client_for(lambda r: httpx.Response(403, text="Forbidden by proxy")) as client:
        with pytest.raises(ApiError, match="Forbidden by proxy"):
            client.post_events(7, "nsk", [])


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bind, note it, close
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        FizzClient(f"http://127.0.0.1:{port}", timeout=2) as client,
        pytest.raises(TransientError, match="cannot reach"),
    ):
        client.register("fzt_x", {})


def test_timeout_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with client_for(handler) as client, pytest.raises(TransientError, match="timed out"):
        client.heartbeat(1, "nsk", {})


def test_retry_until_success_then_stop_on_api_error() -> None:
    answers = iter([TransientError("down"), TransientError("still down"), {"ok": True}])

    def call() -> dict:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    backoff = Backoff(cap=0.01, rng=random.Random(0))
    assert call_with_retry(call, what="test", backoff=backoff, stop=threading.Event()) == {"ok": True}

    calls = []

    def refused() -> None:
        calls.append(1)
        raise ApiError(401, "no")

    with pytest.raises(ApiError):
        call_with_retry(refused, what="test", backoff=backoff, stop=threading.Event())
    assert len(calls) == 1  # a refusal is not retried


def test_retry_gives_up_after_max_attempts_and_on_stop() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise TransientError("down")

    backoff = Backoff(cap=0.01, rng=random.Random(0))
    with pytest.raises(TransientError):
        call_with_retry(failing, what="test", backoff=backoff, stop=threading.Event(), max_attempts=3)
    assert len(calls) == 3

    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        call_with_retry(failing, what="test", backoff=Backoff(cap=60), stop=stop)
