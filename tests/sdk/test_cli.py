"""The installed `fizz` console script, run as a real subprocess."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from spheron_sdk.fizz.config import ConfigDir, NodeConfig

from tests.needs import require_fizz_agent

from .conftest import FIZZ, run_fizz


def test_console_script_is_installed() -> None:
    assert require_fizz_agent() == FIZZ


def test_version(tmp_path: Path) -> None:
    result = run_fizz("version", config_dir=tmp_path)
    assert (result.returncode, result.stdout) == (0, "fizz 0.1.0\n")
    result = run_fizz("version", "--json", config_dir=tmp_path)
    info = json.loads(result.stdout)
    assert info["version"] == "0.1.0"
    assert info["python"] == platform.python_version()
    assert info["system"] == platform.system()


def test_status_when_not_running_exits_3(tmp_path: Path) -> None:
    result = run_fizz("status", config_dir=tmp_path)
    assert result.returncode == 3
    assert "not running" in result.stdout
    result = run_fizz("status", "--json", config_dir=tmp_path)
    assert result.returncode == 3
    assert json.loads(result.stdout)["running"] is False


def test_status_shows_the_last_state_of_a_stopped_agent(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path)
    config.save_node(NodeConfig(server="https://spheron.example", node_id=42, node_secret="nsk_42_x", machine_id=""))
    config.save_state({"status": "online", "last_heartbeat_at": "2026-11-23T10:00:00.000Z", "leases": []})
    config.write_pid(999_999_999)  # stale: no such process
    result = run_fizz("status", "--json", config_dir=tmp_path)
    report = json.loads(result.stdout)
    assert result.returncode == 3
    assert (report["running"], report["node_id"], report["server"]) == (False, 42, "https://spheron.example")
    assert report["last_heartbeat_at"] == "2026-11-23T10:00:00.000Z"
    assert (report["status"], report["agent_state"]) == ("online", "stopped")
    assert "nsk_42_x" not in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["launch"],
        ["start", "--server", "not a url", "--token", "fzt_x"],
        ["start", "--server", "https://s.example", "--token", "fzt_x", "--price-per-hour", "cheap"],
        ["start", "--server", "https://s.example", "--token", "fzt_x", "--price-per-hour", "-1"],
        ["start", "--server", "https://s.example", "--token", "fzt_x", "--runtime", "podman"],
        ["start", "--server", "https://s.example"],  # first start without a token
        ["start", "--token", "fzt_x"],  # first start without a server
        ["logs", "-n", "many"],
        ["stop", "--timeout", "0"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = run_fizz(*args, config_dir=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_stop_when_not_running(tmp_path: Path) -> None:
    result = run_fizz("stop", config_dir=tmp_path)
    assert result.returncode == 0
    assert "not running" in result.stderr
    config = ConfigDir(tmp_path)
    config.write_pid(999_999_999)
    result = run_fizz("stop", config_dir=tmp_path)
    assert result.returncode == 0
    assert "stale pid file" in result.stderr
    assert not config.pid_file.exists()


def test_logs(tmp_path: Path) -> None:
    result = run_fizz("logs", config_dir=tmp_path)
    assert result.returncode == 1
    assert "no log yet" in result.stderr
    (tmp_path / "agent.log").write_text("".join(f"line {n}\n" for n in range(500)))
    result = run_fizz("logs", "-n", "3", config_dir=tmp_path)
    assert (result.returncode, result.stdout) == (0, "line 497\nline 498\nline 499\n")
    assert run_fizz("logs", config_dir=tmp_path).stdout.count("\n") == 50


def test_logs_follow(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text("old 1\nold 2\n")
    follower = subprocess.Popen(
        [str(FIZZ), "logs", "-f", "-n", "1", "--config-dir", str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    guard = threading.Timer(10, follower.kill)  # a broken follow must fail the test, not hang it
    guard.start()
    try:
        assert follower.stdout.readline() == "old 2\n"
        with log.open("a") as handle:
            handle.write("new 3\n")
        assert follower.stdout.readline() == "new 3\n"
        log.rename(tmp_path / "agent.log.1")  # rotation: the follower moves on to the new file
        log.write_text("rotated 4\n")
        assert follower.stdout.readline() == "rotated 4\n"
    finally:
        guard.cancel()
        follower.kill()
        follower.wait()


def test_start_refuses_a_node_of_another_server(tmp_path: Path) -> None:
    ConfigDir(tmp_path).save_node(
        NodeConfig(server="https://one.example", node_id=5, node_secret="nsk_5_x", machine_id="")
    )
    result = run_fizz("start", "--server", "https://two.example", config_dir=tmp_path)
    assert result.returncode == 1
    assert "belongs to node 5 on https://one.example" in result.stderr
    assert "Traceback" not in result.stderr


def test_docker_runtime_without_sdk_or_daemon_is_a_clear_error(tmp_path: Path) -> None:
    args = ["start", "--server", "http://127.0.0.1:9", "--token", "fzt_x", "--runtime", "docker"]
    result = run_fizz(*args, config_dir=tmp_path)
    assert result.returncode == 1
    assert "spheron-sdk[docker]" in result.stderr or "Docker daemon" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_agent_never_imports_django() -> None:
    modules = "agent, cli, client, config, docker_runtime, events, hardware, parsers, runtime"
    code = f"import sys; from spheron_sdk.fizz import {modules}; sys.exit('django' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=20).returncode == 0
