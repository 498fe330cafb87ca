"""The real `fizz` agent, as a separate process, against the live test server.

The agent detects this machine, registers with a token, heartbeats every second (the server
tells it the interval), goes offline when killed and comes back; the server's clock is moved
(core.clock) so that an hour of downtime passes in a moment and the uptime figures move.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from core import clock
from marketplace.deployments import services as deployments
from providers import hooks, liveness, services, uptime
from providers.models import Node, NodeEvent, NodeEventKind, NodeStatus
from tests.factories import make_user
from tests.integration.agents import staked_provider, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("fizz_agent"),
]


@pytest.fixture
def node_token(db):
    provider = staked_provider(make_user(is_provider=True))
    _row, raw = services.node_token_create(provider=provider, label="this machine")
    return provider, raw


def _node() -> Node | None:
    return Node.objects.filter(is_simulated=False).first()


def _online_node() -> Node | None:
    node = _node()
    return node if node and node.status == NodeStatus.ONLINE else None


def _sequence(node_id: int) -> int:
    hb = liveness.last_heartbeats([node_id]).get(node_id)
    return hb["sequence"] if hb else -1


def test_agent_detects_registers_heartbeats_goes_offline_when_killed_and_comes_back(
    fast_server, node_token, agents, tmp_path, settings
):
    _provider, token = node_token
    agent = agents(fast_server, token, "fizz").start()
    try:
        node = wait_for(_online_node, what="the node to come online")
    except AssertionError:
        pytest.fail(f"agent output:\n{agent.output()}")

    # What the agent found on this machine.
    assert node.cpu_cores == psutil.cpu_count(logical=True)
    assert node.memory_gb == psutil.virtual_memory().total // 2**30
    assert 0 < node.storage_gb <= shutil.disk_usage(tmp_path).total // 2**30
    assert node.gpu_model_id.startswith("cpu-") or node.gpu_count >= 1
    assert node.region_id == "eu-west" and node.runtime == "process" and node.agent_version
    machine_id_file = Path("/etc/machine-id")
    if machine_id_file.exists() and machine_id_file.read_text().strip():
        assert node.machine_id == hashlib.sha256(machine_id_file.read_text().strip().encode()).hexdigest()
    assert len(node.machine_id) == 64
    first = _sequence(node.id)
    wait_for(lambda: _sequence(node.id) >= first + 2, what="two more heartbeats")

    # A week of history, so the windows are full (the node is judged on its life otherwise).
    Node.objects.filter(id=node.id).update(registered_at=clock.now() - clock_days(7))
    uptime.refresh_uptime()
    node.refresh_from_db()
    assert (node.uptime_1d, node.uptime_7d, node.uptime_30d) == (1.0, 1.0, 1.0)

    agent.kill()
    last = liveness.last_heartbeats([node.id])[node.id]["at"]
    clock.advance(settings.NODE_OFFLINE_AFTER_SECONDS + 1)
    assert liveness.fold_heartbeats()["offline"] == 1
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE

    clock.advance(3600)  # an hour down
    agent.start()  # the same machine and config: no new registration
    wait_for(_online_node, what="the node to come back online")
    assert Node.objects.filter(is_simulated=False).count() == 1
    uptime.refresh_uptime()
    node.refresh_from_db()
    down = (node.online_since - last).total_seconds()
    assert 3600 < down < 3600 + settings.NODE_OFFLINE_AFTER_SECONDS + 30
    assert node.uptime_1d == pytest.approx(1 - down / 86400, abs=2e-4)
    assert node.uptime_7d == pytest.approx(1 - down / (7 * 86400), abs=1e-4)
    assert node.uptime_1d < node.uptime_7d < 1.0
    assert node.rewards_eligible_from > clock.now()  # the reconnect cool-down


def clock_days(days: int):
    from datetime import timedelta

    return timedelta(days=days)


def test_a_second_machine_with_the_same_token_is_refused(fast_server, node_token, agents, tmp_path):
    _provider, token = node_token
    agents(fast_server, token, "first", machine="machine-one").start()
    wait_for(_online_node, what="the first agent's node")
    second = agents(fast_server, token, "second", machine="machine-two").start()
    assert second.wait(timeout=30) == 1
    assert "already in use" in second.output()
    assert Node.objects.filter(is_simulated=False).count() == 1


def test_sigterm_stops_cleanly_and_the_node_goes_offline_at_once(fast_server, node_token, agents, tmp_path):
    _provider, token = node_token
    agent = agents(fast_server, token, "fizz").start()
    node = wait_for(_online_node, what="the node to come online")
    assert agent.terminate() == 0
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE
    assert NodeEvent.objects.filter(node=node, kind=NodeEventKind.STOPPED).exists()
    assert not (tmp_path / "fizz" / "agent.pid").exists()


class FlakyProxy:
    """A TCP proxy in front of the live server that can drop off the network and come back."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(64)
        self.up = threading.Event()
        self.up.set()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def drop(self):
        self.up.clear()
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections.clear()

    def restore(self):
        self.up.set()

    def close(self):
        self.listener.close()


def test_the_agent_rides_out_network_errors_with_backoff(fast_server, node_token, agents, tmp_path, live_server):
    _provider, token = node_token
    proxy = FlakyProxy(int(live_server.url.rsplit(":", 1)[1]))
    try:
        agent = agents(f"http://127.0.0.1:{proxy.port}", token, "fizz").start()
        node = wait_for(_online_node, what="the node to come online")
        proxy.drop()
        before = _sequence(node.id)
        time.sleep(3)
        assert _sequence(node.id) <= before + 1  # nothing gets through
        proxy.restore()
        wait_for(lambda: _sequence(node.id) >= before + 3, timeout=20, what="heartbeats after the network is back")
        assert agent.process.poll() is None
        assert Node.objects.filter(is_simulated=False).count() == 1
    finally:
        proxy.close()


def test_the_agent_runs_an_assignment_and_reports_events_and_logs(
    fast_server, node_token, agents, tmp_path, monkeypatch
):
    _provider, token = node_token
    received: list[tuple[int, dict]] = []
    script = "import sys; print('hello from lease 41'); print('to stderr', file=sys.stderr); sys.exit(3)"
    assignment = {
        "lease_id": 41, "action": "start", "image": "python:3.12-slim",
        "command": [sys.executable, "-c", script], "args": [], "env": {"GREETING": "hi"}, "ports": [],
        "resources": {"cpu_units": 1, "memory_gb": 1, "storage_gb": 1, "gpu_units": 0},
    }  # fmt: skip

    def source(node_id, reported):
        running = {lease["lease_id"] for lease in reported}
        done = any(event["type"] in ("exited", "failed") for _lease, event in received)
        return [] if done or 41 in running else [assignment]

    def handler(node_id, lease_id, events):
        if lease_id != 41:
            return False
        received.extend((lease_id, event) for event in events)
        return True

    hooks.register_assignment_source(source)
    # The events route calls the deployments service; the live server runs in this process.
    monkeypatch.setattr(deployments, "lease_events", handler)
    try:
        agent = agents(fast_server, token, "fizz").start()
        wait_for(lambda: any(event["type"] == "exited" for _l, event in received), timeout=30, what="the lease to exit")
        types = [event["type"] for _l, event in received]
        assert types.index("provisioning") < types.index("running") < types.index("exited")
        wait_for(lambda: any("hello from lease 41" in line for _l, e in received for line in e.get("lines", [])),
                 what="the log line")  # fmt: skip
        exited = next(event for _l, event in received if event["type"] == "exited")
        assert exited["exit_code"] == 3
        assert agent.process.poll() is None, agent.output()
    finally:
        hooks.unregister(source)
