"""An agent that was killed leaves its workloads running (they have sessions of their own): the next
`fizz start` stops them before its first heartbeat, so that every workload on the node is one the
agent reports, and the server may free an ended lease's capacity once a heartbeat no longer lists it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
from spheron_sdk.fizz.runtime import ProcessRuntime

from .conftest import FakeServer, wait_for
from .test_agent import ONLINE, START

SLEEP = "import time; print('up', flush=True); time.sleep(120)"


def orphan() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SLEEP], start_new_session=True, stdout=subprocess.DEVNULL)


def test_reap_kills_a_workload_left_by_an_earlier_agent_and_nothing_else(tmp_path: Path) -> None:
    left, stranger = orphan(), orphan()
    try:
        started = psutil.Process(left.pid).create_time()
        previous = [
            {"lease_id": 4, "state": "running", "handle": {"pid": left.pid, "started": started}},
            # A pid now used by another process (another start time): left alone.
            {"lease_id": 5, "state": "running", "handle": {"pid": stranger.pid, "started": started - 100}},
            {"lease_id": 6, "state": "provisioning", "handle": None},
        ]
        assert ProcessRuntime(tmp_path).reap(previous) == [4]
        assert left.wait(timeout=10) != 0
        assert stranger.poll() is None
    finally:
        for process in (left, stranger):
            process.kill()
            process.wait()


def test_a_restarted_agent_stops_what_the_killed_one_left_running(
    fake_server: FakeServer, start_agent, tmp_path: Path
) -> None:
    fake_server.heartbeat_replies.append(
        (200, {**ONLINE, "assignments": [{**START, "lease_id": 11, "command": [sys.executable, "-c", SLEEP]}]})
    )
    config_dir = tmp_path / "fizz"
    agent = start_agent("--server", fake_server.url, "--token", "fzt_x", config_dir=config_dir)

    def recorded_pid() -> int | None:
        state = json.loads((config_dir / "state.json").read_text()) if (config_dir / "state.json").exists() else {}
        leases = [lease for lease in state.get("leases", []) if lease.get("handle")]
        return leases[0]["handle"]["pid"] if leases else None

    pid = wait_for(recorded_pid, what="the workload's handle in the state file")
    workload = psutil.Process(pid)
    agent.kill()  # SIGKILL: no chance to stop its workload
    assert workload.is_running() and workload.status() != psutil.STATUS_ZOMBIE

    heartbeats = len(fake_server.calls("/heartbeat"))
    start_agent("--server", fake_server.url, "--token", "fzt_x", config_dir=config_dir)
    wait_for(lambda: len(fake_server.calls("/heartbeat")) > heartbeats, what="the new agent's heartbeat")
    assert not workload.is_running() or workload.status() == psutil.STATUS_ZOMBIE
    assert fake_server.calls("/heartbeat")[heartbeats]["body"]["leases"] == []
