from __future__ import annotations

import hashlib
import json

import pytest

from providers import services
from providers.models import ProviderProfile
from tests.factories import make_user


@pytest.fixture
def provider(db) -> ProviderProfile:
    user = make_user(is_provider=True)
    profile = services.provider_onboard(
        user=user,
        display_name="Acme GPUs",
        payout_evm_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        default_region="us-east",
        default_mode="fizz",
    )
    services.stake_record(provider=profile, kind="stake", amount="2000", reason="test stake")
    profile.refresh_from_db()
    return profile


@pytest.fixture
def outsider(db) -> ProviderProfile:
    user = make_user(is_provider=True)
    return services.provider_onboard(
        user=user, display_name="Other Co", payout_solana_address="11111111111111111111111111111111",
        default_region="eu-west",
    )  # fmt: skip


@pytest.fixture
def token(provider) -> str:
    _row, raw = services.node_token_create(provider=provider, label="box 1")
    return raw


def hardware_report(*, machine: str = "machine-a", gpus: list | None = None, cores: int = 16, **extra) -> dict:
    report = {
        "machine_id": hashlib.sha256(machine.encode()).hexdigest(),
        "hostname": f"host-{machine}",
        "agent_version": "0.1.0",
        "os": "Linux 6.1 (Debian GNU/Linux 12)",
        "arch": "x86_64",
        "runtime": "process",
        "hardware": {
            "cpu_model": "AMD Ryzen 9 7950X",
            "cpu_cores": cores,
            "memory_gb": 64,
            "storage_gb": 900,
            "gpus": gpus
            if gpus is not None
            else [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "uuid": "GPU-1", "memory_total_mib": 24564}],
            "driver_version": "550.54.15",
            "cuda_version": "12.4",
        },
    }
    report.update(extra)
    return report


_TRANSPORT = {"mode": "django"}


@pytest.fixture(params=["django", "wsgi"])
def heartbeat_transport(request):
    """Run a test twice: node API calls through Django's test client, then through the production WSGI
    application (`spheron_web.wsgi`: the heartbeat fast path in front of Django)."""
    _TRANSPORT["mode"] = request.param
    yield request.param
    _TRANSPORT["mode"] = "django"


class WsgiResponse:
    """The little of a test-client response the node API tests read."""

    def __init__(self, status: str, headers: list[tuple[str, str]], content: bytes) -> None:
        self.status_code = int(status.split(" ", 1)[0])
        self.headers = dict(headers)
        self.content = content

    def json(self):
        return json.loads(self.content)


def wsgi_request(path: str, body: bytes, headers: dict[str, str] | None = None, *, app=None, **environ_extra):
    """POST through the production WSGI stack: `NodeHeartbeatFastPath` in front of Django's handler."""
    from django.core import signals
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import close_old_connections
    from django.test import RequestFactory

    from providers.heartbeat_wsgi import NodeHeartbeatFastPath

    request = RequestFactory().post(path, data=body, content_type="application/json", **(headers or {}))
    environ = dict(request.environ, **environ_extra)
    captured = {}

    def start_response(status, response_headers, exc_info=None):
        captured["status"], captured["headers"] = status, response_headers

    # As Django's test client does: the test's transaction keeps its connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        result = (app or NodeHeartbeatFastPath(WSGIHandler()))(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return WsgiResponse(captured["status"], captured["headers"], content)


def post(client, path: str, body, credential: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {credential}"} if credential else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    if _TRANSPORT["mode"] == "wsgi" and path.startswith("/api/v1/nodes/"):
        return wsgi_request(path, data.encode() if isinstance(data, str) else data, headers)
    return client.post(path, data=data, content_type="application/json", **headers)
