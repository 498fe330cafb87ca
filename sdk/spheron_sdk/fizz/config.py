"""The agent's config directory: node.json (credentials), agent.pid, state.json, agent.log.

Everything is written atomically (temp file in the same directory + rename) so a crash or a reader
(`fizz status`) never sees half a file, and with mode 0600 because node.json holds the node secret.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

APP_DIR_NAME = "spheron-fizz"


class ConfigError(Exception):
    """A problem with the config directory that a person has to fix (message is shown as is)."""


def default_config_dir() -> Path:
    """$FIZZ_HOME, else the platform's per-user config location."""
    env = os.environ.get("FIZZ_HOME")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming") / APP_DIR_NAME
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / APP_DIR_NAME
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else home / ".config") / APP_DIR_NAME


def normalize_server(url: str) -> str:
    """Canonical form of a server URL, so "https://Host/" and "https://host" are the same server."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so readers see the old or the new content, never a mix.

    The temp file is created with `mode` from the start (mkstemp makes it 0600), so a secret is
    never readable by others even for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path: Path, value: Any, mode: int = 0o600) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None if it does not exist. A corrupt file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc


@dataclass
class NodeConfig:
    """What registration gave us; enough to heartbeat without the token."""

    server: str
    node_id: int
    node_secret: str
    machine_id: str
    registered_at: str | None = None


class ConfigDir:
    """Paths and file helpers for one agent's config directory."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_config_dir()

    @property
    def node_file(self) -> Path:
        return self.path / "node.json"

    @property
    def pid_file(self) -> Path:
        return self.path / "agent.pid"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def log_file(self) -> Path:
        return self.path / "agent.log"

    @property
    def machine_id_file(self) -> Path:
        return self.path / "machine-id"

    @property
    def work_dir(self) -> Path:
        return self.path / "work"

    def ensure(self) -> None:
        """Create the directory, private to this user (it will hold the node secret)."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    # node.json -------------------------------------------------------------------------------

    def load_node(self) -> NodeConfig | None:
        data = read_json(self.node_file)
        if data is None:
            return None
        try:
            return NodeConfig(
                server=str(data["server"]),
                node_id=int(data["node_id"]),
                node_secret=str(data["node_secret"]),
                machine_id=str(data.get("machine_id", "")),
                registered_at=data.get("registered_at"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{self.node_file} is missing {exc}; delete it to register again") from exc

    def save_node(self, node: NodeConfig) -> None:
        self.ensure()
        write_json_atomic(self.node_file, asdict(node), mode=0o600)

    # state.json ------------------------------------------------------------------------------

    def load_state(self) -> dict[str, Any] | None:
        try:
            data = read_json(self.state_file)
        except ConfigError:
            return None  # status must not fail on a state file from a crashed writer
        return data if isinstance(data, dict) else None

    def save_state(self, state: dict[str, Any]) -> None:
        self.ensure()
        write_json_atomic(self.state_file, state, mode=0o600)

    # agent.pid -------------------------------------------------------------------------------

    def read_pid(self) -> int | None:
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def write_pid(self, pid: int | None = None) -> None:
        self.ensure()
        write_atomic(self.pid_file, f"{pid or os.getpid()}\n".encode(), mode=0o600)

    def remove_pid(self) -> None:
        """Remove the pid file if it is ours (a second agent may have replaced it)."""
        if self.read_pid() == os.getpid():
            try:
                self.pid_file.unlink()
            except FileNotFoundError:
                pass

    def running_pid(self) -> int | None:
        """The pid of the live agent for this directory, or None (no file, dead, or reused pid)."""
        pid = self.read_pid()
        if pid is None or not is_agent_process(pid):
            return None
        return pid


def is_agent_process(pid: int) -> bool:
    """True if `pid` is alive and looks like a fizz agent.

    Checking the command line guards against pid reuse after a crash: we must never report an
    unrelated process as the agent, let alone send it SIGTERM from `fizz stop`.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # alive but not ours to inspect; the pid file says it is the agent
    return "fizz" in cmdline or "spheron_sdk" in cmdline
