"""Failed credentials (API keys, node tokens, node secrets) are limited per client address.

Only failures are counted, in a fixed window per address: a valid credential never touches the
counter. Once an address has failed AUTH_FAILURE_LIMIT times in the current window of
AUTH_FAILURE_WINDOW_SECONDS, it is answered 429 with `Retry-After` until the window ends. All
credential kinds share one counter per address, so switching kinds buys no extra attempts.

What a blocked address may still do depends on the credential:
- API keys and node tokens are not even checked (`auth_refuse_if_blocked`, one cache read before
  the lookup): a blocked address learns nothing more, right or wrong, until the window ends.
- Node secrets are still checked, and a valid one is served: a healthy agent is never limited, even
  behind an address an attacker shares (a NAT). A wrong one is a 429. The heartbeat path reads the
  counter only after a failure, so it costs agents nothing. A node secret carries 256 random bits,
  so an answer per guess does not make it guessable.

The client address is REMOTE_ADDR. Behind a reverse proxy, list the proxy's addresses in
TRUSTED_PROXIES: for a request from one of them, the address is the right-most X-Forwarded-For entry
that is not a trusted proxy (the left-most entries are whatever the client chose to send). IPv6
clients are counted per /64, the block one host usually holds.
"""

from __future__ import annotations

import ipaddress
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from core.errors import ApplicationError


class RateLimited(ApplicationError):
    """429 with `Retry-After: <retry_after>` (the API's handler sets the header)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, {"retry_after_seconds": retry_after}, status=429)
        self.retry_after = retry_after


def _normalised(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _client_hop(request: HttpRequest) -> str:
    """The client's address as sent: REMOTE_ADDR, or behind trusted proxies the right-most
    X-Forwarded-For entry that is not one of them (see the module docstring)."""
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.TRUSTED_PROXIES
    if trusted and remote in trusted:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        for hop in reversed(hops):
            if hop not in trusted:
                return hop
    return remote


def client_ip(request: HttpRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's exact address (an IPv4-mapped IPv6 address as IPv4), or None when it is not one:
    what an API key's allowed networks are matched against."""
    try:
        ip = ipaddress.ip_address(_client_hop(request).strip().strip("[]"))
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_address(request: HttpRequest) -> str:
    """The address failures are counted against (see the module docstring)."""
    hop = _client_hop(request)
    if hop != request.META.get("REMOTE_ADDR", ""):
        return _normalised(hop) or "invalid"
    return _normalised(hop) or hop or "unknown"


def _window() -> tuple[int, int]:
    """(index of the current window, seconds left in it)."""
    seconds = settings.AUTH_FAILURE_WINDOW_SECONDS
    now = time.time()
    index = int(now // seconds)
    return index, max(1, math.ceil((index + 1) * seconds - now))


def _limited(seconds_left: int) -> RateLimited:
    return RateLimited(
        f"Too many failed authentications from your address. Try again in {seconds_left} s.",
        retry_after=seconds_left,
    )


def auth_refuse_if_blocked(request: HttpRequest) -> None:
    """Raise `RateLimited` when the request's address has used up its failures for this window,
    before a credential is looked at (API keys and node tokens, not node secrets: see above)."""
    index, seconds_left = _window()
    key = f"authfail:{client_address(request)}:{index}"
    if cache.get(key, 0) >= settings.AUTH_FAILURE_LIMIT:
        raise _limited(seconds_left)


def auth_failure(request: HttpRequest) -> None:
    """Count one failed authentication from the request's address; raise `RateLimited` once the
    address has used up its failures for this window. Call it only after a credential was refused."""
    limit = settings.AUTH_FAILURE_LIMIT
    index, seconds_left = _window()
    key = f"authfail:{client_address(request)}:{index}"
    failures = cache.get(key, 0)
    if failures >= limit:
        raise _limited(seconds_left)
    if not cache.add(key, 1, seconds_left + 1):
        try:
            cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.add(key, 1, seconds_left + 1)
