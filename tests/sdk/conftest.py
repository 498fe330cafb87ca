"""Helpers for the fizz agent tests: recorded outputs, a fake nvidia-smi, a fake server, the CLI.

None of these tests touch the database or the Django server; the fake server below only speaks
the HTTP contract of sdk/PROTOCOL.md so the agent can be run as a real process against it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agents import wait_for  # noqa: F401  (for the tests of this folder)
from tests.needs import fizz_path, require_fizz_agent

FIXTURES = Path(__file__).parent / "fixtures"
# The agent's console script (tests.needs: $SPHERON_TEST_FIZZ, or beside this Python).
FIZZ = fizz_path()


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path) -> Callable[..., Path]:
    """Make an executable that prints a recorded query csv / full output, like nvidia-smi would."""

    def make(query: str | None = None, full: str | None = None, fail: str | None = None, code: int = 9) -> Path:
        script = tmp_path / "nvidia-smi"
        if fail is not None:
            body = f"cat {shlex.quote(str(FIXTURES / fail))}\nexit {code}\n"
        else:
            body = (
                'case "$1" in\n'
                f"  --query-gpu=*) cat {shlex.quote(str(FIXTURES / query))} ;;\n"
                f"  *) cat {shlex.quote(str(FIXTURES / full))} ;;\n"
                "esac\n"
            )
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
        return script

    return make


def fizz_env(config_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIZZ_")}
    env.update(
        FIZZ_HOME=str(config_dir),
        FIZZ_MACHINE_ID="test-machine-1",
        FIZZ_NVIDIA_SMI=str(config_dir / "no-nvidia-smi-here"),
        FIZZ_BACKOFF_CAP="0.2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_fizz(*args: str, config_dir: Path, timeout: float = 20, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require_fizz_agent()), *args],
        env=fizz_env(config_dir, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


REGISTERED = {
    "node_id": 42,
    "node_secret": "nsk_42_s3cr3t",
    "status": "pending",
    "mode": "fizz",
    "gpu_model": None,
    "gpu_count": 0,
    "gpu_tier": None,
    "trust_tier": 7,
    "price_per_hour": "0.300000",
    "heartbeat_interval_seconds": 1,
}


class FakeServer:
    """The server side of PROTOCOL.md, scripted per test: queued replies, then defaults."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.register_replies: deque[tuple[int, dict[str, Any]]] = deque()
        self.heartbeat_replies: deque[tuple[int, dict[str, Any]]] = deque()
        self.event_replies: deque[tuple[int, dict[str, Any]]] = deque()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                status, reply = server.reply(self.path, self.headers.get("Authorization", ""), body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def reply(self, path: str, auth: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append({"path": path, "auth": auth, "body": body})
            if path == "/api/v1/nodes/register":
                return self.register_replies.popleft() if self.register_replies else (201, dict(REGISTERED))
            if path.endswith("/heartbeat"):
                if self.heartbeat_replies:
                    return self.heartbeat_replies.popleft()
                status = "offline" if body.get("stopping") else "online"  # as the server answers a stop
                return 200, {"status": status, "maintenance": False, "heartbeat_interval_seconds": 1}
            if path.endswith("/events"):
                if self.event_replies:
                    return self.event_replies.popleft()
                return 202, {"accepted": len(body.get("events", []))}
            return 404, {"message": "not found", "extra": {}}

    def calls(self, suffix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].endswith(suffix)]

    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.calls("/events") for e in r["body"]["events"]]


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


class AgentProcess:
    """`fizz start` as a real child process, its output in a file (a pipe could fill and block)."""

    def __init__(self, config_dir: Path, args: list[str], **env: str) -> None:
        fizz = require_fizz_agent()  # before the output file is opened: a skip leaves nothing open
        self.config_dir = config_dir
        self.output = config_dir.parent / f"{config_dir.name}-agent-output.txt"
        self.handle = self.output.open("w")
        self.proc = subprocess.Popen(
            [str(fizz), "start", "--config-dir", str(config_dir), *args],
            env=fizz_env(config_dir, **env),
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.output.read_text()

    def wait(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.handle.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.handle.close()


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(*args: str, config_dir: Path | None = None, **env: str) -> AgentProcess:
        agent = AgentProcess(config_dir or tmp_path / "fizz", list(args), **env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()
