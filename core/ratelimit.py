"""Request rate limits held in the cache, so every web process counts against the same numbers
(the Redis cache in production: `core.cache.ReusingRedisCache`).

A limit is `quota` requests per `window` seconds for one bucket (e.g. one API key's writes). The
window opens at the bucket's first request and lasts `window` seconds; the next request after it
opens a new one. Both keys are written with `add` (Redis SET NX), and the count with `incr` (Redis
INCRBY), so two processes never both see the same count.

Clients learn the limit from the response headers of the IETF draft "RateLimit header fields for
HTTP" (draft-ietf-httpapi-ratelimit-headers): its current fields, `RateLimit-Policy:
"<name>";q=<quota>;w=<window>` and `RateLimit: "<name>";r=<remaining>;t=<seconds to reset>`, and
the three fields of its earlier revisions (to -06) that most clients still read: `RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset` (seconds). A refused request also gets `Retry-After`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from core.throttle import RateLimited

_UNITS = {
    **dict.fromkeys(("s", "sec", "second"), 1),
    **dict.fromkeys(("m", "min", "minute"), 60),
    **dict.fromkeys(("h", "hour"), 3600),
    **dict.fromkeys(("d", "day"), 86400),
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    quota: int
    window: int  # seconds


def rate_parse(value: str) -> Rate:
    """ "600/min", "30/10s", "5000/hour", "2/day" → Rate. A bad value is a configuration error."""
    match = _RATE.match(str(value).lower())
    if not match or match.group(3) not in _UNITS:
        raise ImproperlyConfigured(f"A rate is like '600/min' or '30/10s' (units s, min, hour, day), not {value!r}.")
    quota = int(match.group(1))
    window = int(match.group(2) or 1) * _UNITS[match.group(3)]
    if quota < 1 or window < 1:
        raise ImproperlyConfigured(f"A rate needs at least one request per at least one second, not {value!r}.")
    return Rate(quota=quota, window=window)


@dataclass(frozen=True)
class RateLimitState:
    """One bucket after a request was counted: what the response headers say."""

    policy: str
    quota: int
    window: int
    remaining: int
    reset: int  # seconds until the window ends (at least 1)
    allowed: bool

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset}',
            "RateLimit-Limit": str(self.quota),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset)
        return headers


def _window_start(key: str, window: int, now_ms: int) -> int:
    """The start (ms) of the bucket's current window, opening one if none is open."""
    for _attempt in range(3):
        if cache.add(key, now_ms, window):
            return now_ms
        start = cache.get(key)
        if start is not None:
            return int(start)
    return now_ms  # the key kept expiring under us: count from now


def rate_limit_hit(*, bucket: str, policy: str, rate: Rate) -> RateLimitState:
    """Count one request against `bucket` and say whether it is within `rate`."""
    now_ms = int(time.time() * 1000)
    start = _window_start(f"rl:{bucket}:start", rate.window, now_ms)
    counter = f"rl:{bucket}:{start}"
    if cache.add(counter, 1, rate.window + 1):
        count = 1
    else:
        try:
            count = cache.incr(counter)
        except ValueError:  # expired between the two calls: this request opens the count again
            cache.add(counter, 1, rate.window + 1)
            count = 1
    reset = max(1, math.ceil((start + rate.window * 1000 - now_ms) / 1000))
    return RateLimitState(
        policy=policy,
        quota=rate.quota,
        window=rate.window,
        remaining=max(0, rate.quota - count),
        reset=reset,
        allowed=count <= rate.quota,
    )


class RateLimitExceeded(RateLimited):
    """429 for a rate limit: carries the state, so the response gets its RateLimit-* headers."""

    def __init__(self, message: str, *, state: RateLimitState) -> None:
        super().__init__(message, retry_after=state.reset)
        self.extra.update({"limit": state.quota, "window_seconds": state.window, "policy": state.policy})
        self.state = state
