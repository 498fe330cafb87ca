"""The agent as a real `fizz start` process against a fake server that speaks PROTOCOL.md."""

from __future__ import annotations

import json
import signal
import stat
import sys
from pathlib import Path

from .conftest import FakeServer, run_fizz, wait_for

START = {
    "lease_id": 7,
    "action": "start",
    "image": "python:3.12-slim",
    "command": [sys.executable, "-c", "import sys; print('hello'); print('bad', file=sys.stderr)"],
    "args": [],
    "env": {"KEY": "value"},
    "ports": [],
    "resources": {"cpu_units": 1, "memory_gb": 1, "storage_gb": 1, "gpu_units": 0},
}
ONLINE = {"status": "online", "maintenance": False, "heartbeat_interval_seconds": 1}


def test_register_heartbeat_run_a_lease_and_stop(fake_server: FakeServer, start_agent, tmp_path: Path) -> None:
    challenge = {"id": "c1", "nonce": "n0nce", "kind": "resources", "expires_at": "2026-11-23T10:01:00Z"}
    fake_server.heartbeat_replies.append((200, {**ONLINE, "challenges": [challenge], "assignments": [START]}))
    # The server repeats the start (as it may until it sees the lease): it must not run twice.
    fake_server.heartbeat_replies.append((200, {**ONLINE, "assignments": [START]}))
    config_dir = tmp_path / "fizz"
    agent = start_agent("--server", fake_server.url, "--token", "fzt_" + "a" * 43, "--region", "us-east")

    wait_for(lambda: any(e["type"] == "exited" for e in fake_server.events()), what="the lease to exit")
    wait_for(lambda: len(fake_server.calls("/heartbeat")) >= 3, what="three heartbeats")

    (register,) = fake_server.calls("/register")
    assert register["auth"] == "Bearer fzt_" + "a" * 43
    body = register["body"]
    assert len(body["machine_id"]) == 64 and body["agent_version"] == "0.1.0"
    assert (body["runtime"], body["region"], body["price_per_hour"]) == ("process", "us-east", None)
    assert body["hardware"]["gpus"] == [] and body["hardware"]["cpu_cores"] > 0
    node = json.loads((config_dir / "node.json").read_text())
    assert (node["node_id"], node["node_secret"], node["server"]) == (42, "nsk_42_s3cr3t", fake_server.url)
    assert stat.S_IMODE((config_dir / "node.json").stat().st_mode) == 0o600

    beats = [c["body"] for c in fake_server.calls("/heartbeat")]
    assert all(c["auth"] == "Bearer nsk_42_s3cr3t" for c in fake_server.calls("/heartbeat"))
    assert [b["sequence"] for b in beats] == list(range(1, len(beats) + 1))
    assert beats[0]["challenge_responses"] == []
    (answer,) = beats[1]["challenge_responses"]
    assert (answer["id"], answer["nonce"]) == ("c1", "n0nce")
    assert answer["measured"]["cpu_cores"] > 0 and answer["measured"]["gpus"] == []
    assert beats[2]["challenge_responses"] == []  # answered once
    assert set(beats[0]["usage"]) == {
        "cpu_percent",
        "memory_used_gb",
        "storage_free_gb",
        "gpu_utilization_percent",
        "gpu_memory_used_mib",
    }

    events = fake_server.events()
    assert [e["type"] for e in events if e["type"] != "log"] == ["provisioning", "running", "exited"]
    assert events[-1]["exit_code"] == 0
    logs = {e["stream"]: e["lines"] for e in events if e["type"] == "log"}
    assert logs == {"stdout": ["hello"], "stderr": ["bad"]}
    assert {c["path"] for c in fake_server.calls("/events")} == {"/api/v1/leases/7/events"}

    status = run_fizz("status", "--json", config_dir=config_dir)
    report = json.loads(status.stdout)
    assert status.returncode == 0
    assert (report["running"], report["node_id"], report["status"], report["agent_state"]) == (
        True,
        42,
        "online",
        "running",
    )
    assert report["last_heartbeat_at"]

    stop = run_fizz("stop", config_dir=config_dir)
    assert stop.returncode == 0, stop.stderr
    assert agent.wait() == 0
    assert fake_server.calls("/heartbeat")[-1]["body"]["stopping"] is True
    assert not (config_dir / "agent.pid").exists()
    log = (config_dir / "agent.log").read_text()
    assert "registered as node 42" in log and "lease 7: exited" in log
    assert "nsk_42_s3cr3t" not in log and "fzt_" not in log  # secrets stay out of the log
    stopped = run_fizz("status", config_dir=config_dir)
    assert stopped.returncode == 3
    assert "status:     offline (server)" in stopped.stdout  # what the server said to the stop

    # Started again without a token: the stored node is used, nothing is registered again.
    again = start_agent("--server", fake_server.url, config_dir=config_dir)
    wait_for(lambda: len(fake_server.calls("/heartbeat")) > len(beats) + 1, what="a heartbeat after restart")
    again.proc.send_signal(signal.SIGINT)
    assert again.wait() == 0
    assert len(fake_server.calls("/register")) == 1


def test_stop_assignment_and_shutdown_stop_running_leases(fake_server: FakeServer, start_agent) -> None:
    def sleeper(lease_id: int) -> dict:
        code = "import time; print('up', flush=True); time.sleep(60)"
        return {**START, "lease_id": lease_id, "command": [sys.executable, "-c", code]}

    fake_server.heartbeat_replies.append((200, {**ONLINE, "assignments": [sleeper(8), sleeper(9)]}))
    fake_server.heartbeat_replies.append((200, {**ONLINE, "assignments": [{"lease_id": 9, "action": "stop"}]}))
    agent = start_agent("--server", fake_server.url, "--token", "fzt_x")
    wait_for(lambda: any(e["type"] == "stopped" for e in fake_server.events()), what="lease 9 to stop")
    running = [{"lease_id": 8, "state": "running"}, {"lease_id": 9, "state": "running"}]
    assert fake_server.calls("/heartbeat")[1]["body"]["leases"] == running
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.wait() == 0
    stopped = {
        c["path"]: e["message"]
        for c in fake_server.calls("/events")
        for e in c["body"]["events"]
        if e["type"] == "stopped"
    }
    assert stopped == {
        "/api/v1/leases/9/events": "stopped by the server",
        "/api/v1/leases/8/events": "agent shutting down",
    }
    last = fake_server.calls("/heartbeat")[-1]["body"]
    assert last["stopping"] is True and last["leases"] == []


def test_keeps_going_through_a_server_outage(fake_server: FakeServer, start_agent, tmp_path: Path) -> None:
    down = (503, {"message": "restarting", "extra": {}})
    refused = (422, {"message": "usage.cpu_percent: not a number", "extra": {"field": "usage.cpu_percent"}})
    fake_server.heartbeat_replies.extend([down, down, refused, down])
    agent = start_agent("--server", fake_server.url, "--token", "fzt_x")
    wait_for(lambda: len(fake_server.calls("/heartbeat")) >= 5, what="a heartbeat after the outage")
    wait_for(lambda: (tmp_path / "fizz" / "state.json").exists(), what="the state file")
    wait_for(
        lambda: json.loads((tmp_path / "fizz" / "state.json").read_text())["status"] == "online",
        what="status online",
    )
    assert agent.proc.poll() is None
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.wait() == 0
    output = agent.text()
    assert output.count("heartbeat failed") == 3 and "retrying in" in output
    assert "heartbeat refused (422): usage.cpu_percent: not a number; retrying in" in output
    assert "heartbeat delivered again after 4 failed attempt(s)" in output


def test_token_in_use_by_another_machine(fake_server: FakeServer, start_agent) -> None:
    message = "this token is already in use by another machine (node 17)"
    fake_server.register_replies.append((409, {"message": message, "extra": {"node_id": 17}}))
    agent = start_agent("--server", fake_server.url, "--token", "fzt_x")
    assert agent.wait() == 1
    output = agent.text()
    assert message in output and "Traceback" not in output


def test_token_not_accepted(fake_server: FakeServer, start_agent, tmp_path: Path) -> None:
    fake_server.register_replies.append((401, {"message": "invalid token", "extra": {}}))
    agent = start_agent("--server", fake_server.url, "--token", "fzt_x")
    assert agent.wait() == 1
    assert "the token was not accepted (wrong or revoked)" in agent.text()
    assert not (tmp_path / "fizz" / "node.json").exists()
    assert not (tmp_path / "fizz" / "agent.pid").exists()


def test_revoked_secret_stops_the_agent(fake_server: FakeServer, start_agent) -> None:
    fake_server.heartbeat_replies.append((401, {"message": "revoked", "extra": {}}))
    agent = start_agent("--server", fake_server.url, "--token", "fzt_x")
    assert agent.wait() == 1
    output = agent.text()
    assert "node secret no longer accepted; the token may have been revoked" in output
    assert "Traceback" not in output
    assert len(fake_server.calls("/heartbeat")) == 1  # no last heartbeat with a refused secret


def test_unreachable_server_at_first_registration_gives_up(start_agent, tmp_path: Path) -> None:
    agent = start_agent("--server", "http://127.0.0.1:9", "--token", "fzt_x", FIZZ_BACKOFF_CAP="0.01")
    assert agent.wait() == 1
    output = agent.text()
    assert "cannot register with http://127.0.0.1:9" in output
    assert output.count("registration failed") == 9  # 10 attempts, 9 waits


def test_second_agent_on_the_same_config_dir_is_refused(fake_server: FakeServer, start_agent, tmp_path: Path) -> None:
    agent = start_agent("--server", fake_server.url, "--token", "fzt_x")
    wait_for(lambda: fake_server.calls("/heartbeat"), what="a heartbeat")
    second = run_fizz("start", "--server", fake_server.url, config_dir=tmp_path / "fizz")
    assert second.returncode == 1
    assert f"already running for {tmp_path / 'fizz'} (pid {agent.proc.pid})" in second.stderr
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.wait() == 0
