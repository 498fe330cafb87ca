"""HTTP client for the server's node API (sdk/PROTOCOL.md) and the retry policy around it.

A call either returns the decoded JSON reply, raises `TransientError` (worth retrying: connection
refused, timeout, 5xx, 429) or raises `ApiError` (the server refused; retrying will not help).
"""

from __future__ import annotations

import logging
import os
import platform
import random
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from spheron_sdk import __version__

log = logging.getLogger("fizz.client")

T = TypeVar("T")

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
USER_AGENT = f"fizz/{__version__} (python {platform.python_version()}; {platform.system().lower()})"


class ApiError(Exception):
    """The server answered with a 4xx other than 429: a final answer."""

    def __init__(self, status: int, message: str, extra: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.extra = extra if extra is not None else {}


class TransientError(Exception):
    """The call may succeed later (network down, server restarting or overloaded)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Interrupted(Exception):
    """A retry loop gave up because the agent is shutting down."""


class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)).

    Full jitter spreads a fleet of agents that lost the server at the same moment, so they do not
    all come back in the same second when it restarts.
    """

    def __init__(
        self,
        base: float = BACKOFF_BASE_SECONDS,
        cap: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = backoff_cap_from_env() if cap is None else cap
        self.rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        # Cap the exponent: 2**1000 is a float overflow, and anything past 2**32 is the cap anyway.
        return min(self.cap, self.base * 2 ** min(max(attempt, 0), 32))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0, self.ceiling(attempt))


def backoff_cap_from_env(default: float = BACKOFF_CAP_SECONDS) -> float:
    """$FIZZ_BACKOFF_CAP may lower the cap (tests, impatient operators) but never raise it."""
    raw = os.environ.get("FIZZ_BACKOFF_CAP")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("ignoring FIZZ_BACKOFF_CAP=%r: not a number", raw)
        return default
    return min(default, max(0.0, value))


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _error_message(response: httpx.Response) -> tuple[str, Any]:
    """The contract's {"message", "extra"}, or a short excerpt of whatever else came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"], body.get("extra") or {}
    text = " ".join(response.text.split())[:200]
    return (text or response.reason_phrase or f"HTTP {response.status_code}"), {}


class FizzClient:
    """One server's node API. Thread-confined: give each thread its own client."""

    def __init__(self, server: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.server = server.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,  # a redirect would drop or leak the Authorization header
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FizzClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, path: str, credential: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = self._http.post(path, json=payload, headers={"Authorization": f"Bearer {credential}"}, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out talking to {self.server} ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach {self.server}: {exc or type(exc).__name__}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            message, _ = _error_message(response)
            raise TransientError(f"server answered {status}: {message}", _retry_after(response))
        if status >= 300:
            message, extra = _error_message(response)
            raise ApiError(status, message, extra)
        try:
            return response.json()
        except ValueError as exc:
            # A 2xx that is not JSON is a proxy or a wrong URL, not our server; it may heal.
            raise TransientError(f"server answered {status} with a body that is not JSON") from exc

    def register(self, token: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.post("/api/v1/nodes/register", token, payload)

    def heartbeat(
        self, node_id: int, secret: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        return self.post(f"/api/v1/nodes/{node_id}/heartbeat", secret, payload, timeout=timeout)

    def post_events(self, lease_id: int, secret: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return self.post(f"/api/v1/leases/{lease_id}/events", secret, {"events": events})


def call_with_retry(
    call: Callable[[], T],
    *,
    what: str,
    backoff: Backoff,
    stop: threading.Event,
    max_attempts: int | None = None,
    logger: logging.Logger = log,
) -> T:
    """Run `call` until it returns, retrying `TransientError` with backoff.

    `ApiError` propagates at once. Raises `Interrupted` when `stop` is set while waiting, and the
    last `TransientError` after `max_attempts` (None: forever). The sleep is `stop.wait`, so a
    shutdown never waits out a 60 s backoff.
    """
    attempt = 0
    while True:
        if stop.is_set():
            raise Interrupted(what)
        try:
            return call()
        except TransientError as exc:
            if max_attempts is not None and attempt + 1 >= max_attempts:
                raise
            delay = backoff.delay(attempt)
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, backoff.cap))
            logger.warning("%s failed (attempt %d): %s; retrying in %.1f s", what, attempt + 1, exc.reason, delay)
            attempt += 1
            if stop.wait(delay):
                raise Interrupted(what) from exc
