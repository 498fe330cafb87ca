"""The real `fizz` agent as a process, for the integration and browser tests that run one.

A pytest plugin too (registered in tests/conftest.py): `fizz_agent` (the console script, or skip;
under CI=true fail), `fast_server` (the live server, heartbeats every second) and `agents` (agent
processes, stopped after the test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from providers.models import Node, NodeStatus
from tests.needs import fizz_path, require_fizz_agent

PAYOUT_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture(scope="session")
def fizz_agent() -> Path:
    """The agent's console script; without it the test skips, and under CI=true it fails. Session
    scoped, so that the test stops here before a browser or a chain is started for nothing."""
    return require_fizz_agent()


@pytest.fixture
def fast_server(settings, live_server) -> str:
    """The live server's URL, with agents heartbeating every second and no random challenges."""
    settings.NODE_HEARTBEAT_INTERVAL_SECONDS = 1
    settings.NODE_CHALLENGES_PER_HOUR = 0
    return live_server.url


@pytest.fixture
def agents(tmp_path, fizz_agent):
    """`agents(server, token, name="fizz", machine=..., extra_env=...)`: an Agent (not started yet)
    whose config directory is tmp_path/name. Each is killed at the end with its workloads; with
    FIZZ_TEST_VERBOSE set, its output is printed."""
    made: list[Agent] = []

    def make(server: str, token: str, name: str = "fizz", **options) -> Agent:
        agent = Agent(server, token, tmp_path / name, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        kill_with_workloads(agent)
        if os.environ.get("FIZZ_TEST_VERBOSE"):
            print(agent.output())


def wait_for(predicate, *, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Agent:
    """One `fizz start` process with its own config directory and log file."""

    def __init__(self, server: str, token: str, home: Path, *, machine: str | None = None, extra_env=None):
        self.home = home
        self.log_path = home.parent / f"{home.name}.out"
        env = {**os.environ, "FIZZ_BACKOFF_CAP": "1", **(extra_env or {})}
        if machine:
            env["FIZZ_MACHINE_ID"] = machine
        self.command = [
            str(fizz_path()), "start", "--server", server, "--token", token, "--runtime", "process",
            "--config-dir", str(home), "--region", "eu-west",
        ]  # fmt: skip
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> Agent:
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float = 20) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def kill_with_workloads(agent: Agent) -> None:
    """SIGKILL the agent and the workload processes it started (their own sessions, by pid)."""
    if agent.process is None or agent.process.poll() is not None:
        return
    children = psutil.Process(agent.process.pid).children(recursive=True)
    agent.kill()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def online_node() -> Node | None:
    """The first real (not simulated) node online: the one an agent of the test registered."""
    return Node.objects.filter(is_simulated=False, status=NodeStatus.ONLINE).first()


def staked_provider(user):
    """`user` onboarded as the provider "Laptop Lab" (us-east) with 1,000 $SPON staked: enough for
    the node an agent registers to be rentable."""
    from providers import services

    provider = services.provider_onboard(
        user=user, display_name="Laptop Lab", payout_evm_address=PAYOUT_ADDRESS, default_region="us-east"
    )
    services.stake_record(provider=provider, kind="stake", amount="1000")
    return provider
