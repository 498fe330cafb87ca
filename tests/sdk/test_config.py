"""The config directory: secret files are 0600, writes are atomic, pid files are checked."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from spheron_sdk.fizz import config as config_module
from spheron_sdk.fizz.config import ConfigDir, ConfigError, NodeConfig, default_config_dir, normalize_server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_node_file_is_private_and_round_trips(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "fizz")
    node = NodeConfig(server="https://spheron.example", node_id=42, node_secret="nsk_42_abc", machine_id="f" * 64)
    config.save_node(node)
    assert mode(config.node_file) == 0o600
    assert mode(config.path) == 0o700
    assert config.load_node() == node


def test_state_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ConfigDir(tmp_path)
    config.save_state({"status": "online", "sequence": 1})
    assert mode(config.state_file) == 0o600

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(config_module.os, "replace", crash)
    with pytest.raises(OSError):
        config.save_state({"status": "offline", "sequence": 2})
    monkeypatch.undo()
    # The old state is whole, and no temp file is left behind.
    assert config.load_state() == {"status": "online", "sequence": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_corrupt_files(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path)
    config.state_file.write_text("{not json")
    assert config.load_state() is None  # status must keep working
    config.node_file.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        config.load_node()
    config.node_file.write_text('{"server": "https://x"}')
    with pytest.raises(ConfigError, match="delete it"):
        config.load_node()


def test_default_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FIZZ_HOME", str(tmp_path / "home"))
    assert default_config_dir() == tmp_path / "home"
    monkeypatch.delenv("FIZZ_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_config_dir() == tmp_path / "xdg" / "spheron-fizz"


def test_normalize_server() -> None:
    assert normalize_server("HTTPS://Spheron.Example/") == "https://spheron.example"
    assert normalize_server("http://127.0.0.1:8000/prefix/") == "http://127.0.0.1:8000/prefix"
    for bad in ("spheron.example", "ftp://x", "https://"):
        with pytest.raises(ValueError):
            normalize_server(bad)


def test_pid_file(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path)
    assert config.running_pid() is None
    config.write_pid()
    assert mode(config.pid_file) == 0o600
    assert config.read_pid() == os.getpid()
    config.remove_pid()
    assert not config.pid_file.exists()


def test_a_live_process_that_is_not_the_agent_does_not_count(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        config.write_pid(sleeper.pid)
        assert config.running_pid() is None  # pid reuse after a crash: never mistake it for the agent
    finally:
        sleeper.kill()
        sleeper.wait()
    fake_agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "fizz", "start"])
    try:
        config.write_pid(fake_agent.pid)
        assert config.running_pid() == fake_agent.pid
    finally:
        fake_agent.kill()
        fake_agent.wait()
    assert config.running_pid() is None
