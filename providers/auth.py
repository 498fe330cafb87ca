"""The node agent's auth classes for /api/v1: a node token (registration) and the node secret
(heartbeats, lease events), each refusing a body larger than its route takes before reading it.
Used by providers.api and by the routes of other apps that a node calls (marketplace.deployments'
lease events)."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.auth import BearerAuth
from core.errors import ApplicationError
from core.throttle import auth_failure, auth_refuse_if_blocked
from providers import liveness

MAX_NODE_PAYLOAD_BYTES = 64 * 1024
MAX_EVENTS_PAYLOAD_BYTES = 2 * 1024 * 1024


def _check_size(request: HttpRequest, limit: int) -> None:
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    if length > limit or len(request.body) > limit:
        raise ApplicationError(f"The request body is too large (at most {limit // 1024} KiB).", status=400)


class NodeTokenAuth(BearerAuth):
    """`Authorization: Bearer fzt_…` — a node token from the dashboard (registration only; a token
    that is well formed but unknown is refused, and counted, by `register`)."""

    def authenticate(self, request: HttpRequest, token: str) -> str | None:
        _check_size(request, MAX_NODE_PAYLOAD_BYTES)
        auth_refuse_if_blocked(request)  # a blocked address's token is not even looked up
        if not token.strip().startswith("fzt_"):
            auth_failure(request)
            return None
        return token.strip()


class NodeSecretAuth(BearerAuth):
    """`Authorization: Bearer nsk_<node id>_…` — the secret a node got at registration. Failures
    are rate limited per client address; a valid secret never touches the counter."""

    limit = MAX_NODE_PAYLOAD_BYTES

    def authenticate(self, request: HttpRequest, token: str) -> int | None:
        _check_size(request, self.limit)
        found = liveness.node_authenticate(token.strip())
        if found is None:
            auth_failure(request)
            return None
        request.node_info = found[1]  # type: ignore[attr-defined]
        return found[0]


class NodeSecretEventsAuth(NodeSecretAuth):
    limit = MAX_EVENTS_PAYLOAD_BYTES


class NodeHeartbeatAuth(NodeSecretAuth):
    """The node secret, reading the heartbeat's other cache state in the same round trip."""

    def authenticate(self, request: HttpRequest, token: str) -> int | None:
        _check_size(request, self.limit)
        found = liveness.node_authenticate_heartbeat(token.strip())
        if found is None:
            auth_failure(request)
            return None
        request.node_info, request.node_cached = found[1], found[2]  # type: ignore[attr-defined]
        return found[0]
