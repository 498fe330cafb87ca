"""An API key's rate limit is shared by every web process: two gunicorn servers on PostgreSQL and
Redis (the production cache backend, core.cache.ReusingRedisCache) count one key's requests
against one limit, and either refuses the request past it with a 429, `Retry-After` and the
RateLimit-* headers.

The servers run this test's settings with API_KEY_RATE_LIMITS = {"read": "10/min"} (a settings module
written for them), against this test's database and Redis. Needs PostgreSQL (the servers read the
key the test wrote) and Redis; without them the test skips, and under CI=true it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from accounts.api_keys import api_key_create
from tests.factories import make_user
from tests.integration.processes import ROOT, require_postgresql_and_redis, shared_env, spawn, stop

READ_LIMIT = 10
START_TIMEOUT_SECONDS = 60

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def postgresql_and_redis() -> None:
    require_postgresql_and_redis(
        postgresql="which both servers read the key from", redis="the cache both servers count in"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(port: int, settings_dir: Path, log: Path) -> subprocess.Popen:
    env = shared_env(
        DJANGO_SETTINGS_MODULE="ratelimit_test_settings",
        PYTHONPATH=os.pathsep.join([str(settings_dir), str(ROOT)]),
        CACHE_KEY_PREFIX=settings.CACHES["default"].get("KEY_PREFIX", ""),
    )
    command = [
        sys.executable, "-m", "gunicorn", "spheron_web.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--chdir", str(ROOT), "--log-level", "info",
    ]  # fmt: skip
    return spawn(command, env=env, log=log)


def _wait_until_up(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server at {base} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/api/v1/deployments/spec-schema", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server at {base} did not answer within {START_TIMEOUT_SECONDS} s:\n{log.read_text()[-3000:]}")


def test_two_web_processes_share_one_keys_rate_limit(postgresql_and_redis, tmp_path):
    (tmp_path / "ratelimit_test_settings.py").write_text(
        f"from spheron_web.settings import *  # noqa: F403\n\nAPI_KEY_RATE_LIMITS = {{'read': '{READ_LIMIT}/min'}}\n"
    )
    _key, raw_key = api_key_create(user=make_user(is_developer=True), label="two servers")
    ports = [_free_port(), _free_port()]
    servers = [_start_server(port, tmp_path, tmp_path / f"server-{port}.log") for port in ports]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base, server, port in zip(bases, servers, ports, strict=True):
            _wait_until_up(base, server, tmp_path / f"server-{port}.log")
        headers = {"Authorization": f"Bearer {raw_key}"}

        # Alternate between the two servers: each answer counts down from the other's.
        answers = [httpx.get(f"{bases[n % 2]}/api/v1/wallets", headers=headers, timeout=10) for n in range(READ_LIMIT)]
        past = [httpx.get(f"{base}/api/v1/wallets", headers=headers, timeout=10) for base in bases]
    finally:
        stop(servers)

    assert [answer.status_code for answer in answers] == [200] * READ_LIMIT
    assert [int(answer.headers["RateLimit-Remaining"]) for answer in answers] == list(range(READ_LIMIT - 1, -1, -1))
    for refused in past:  # both servers refuse: neither has a budget of its own
        assert refused.status_code == 429
        assert refused.headers["RateLimit-Limit"] == str(READ_LIMIT)
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert refused.headers["RateLimit-Policy"] == f'"read";q={READ_LIMIT};w=60'
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
        assert refused.json()["message"].startswith(f"This key made {READ_LIMIT} read requests in 60 s")
