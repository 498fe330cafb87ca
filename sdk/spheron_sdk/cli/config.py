"""Where `sphnctl login` keeps the server and the API key: config.json in the user's config
directory (platformdirs: ~/.config/spheron on Linux), the directory 0700 and the file 0600, written
whole through a temporary file so a crash never leaves half a key. SPHERON_CONFIG_DIR moves it.

Precedence: --api-key / SPHERON_API_KEY over the file; --server / SPHERON_SERVER over the file
over DEFAULT_SERVER.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

DEFAULT_SERVER = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """The stored config cannot be read or written; the message says why."""


def config_dir() -> Path:
    override = os.environ.get("SPHERON_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("spheron", appauthor=False))


def config_path() -> Path:
    return config_dir() / "config.json"


def normalize_server(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.strip().rstrip("/")


def load() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; delete it and log in again")
    return {key: value for key, value in data.items() if isinstance(value, str)}


def save(data: dict[str, str]) -> Path:
    """Writes the config with owner-only permissions; returns its path."""
    directory = config_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".config-", suffix=".json")
        try:
            os.fchmod(handle, 0o600)
            with os.fdopen(handle, "w") as file:
                json.dump(data, file, indent=2)
                file.write("\n")
            os.replace(temporary, config_path())
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {config_path()}: {exc}") from None
    return config_path()


@dataclass(frozen=True)
class Settings:
    server: str
    api_key: str | None
    key_source: str  # "option", "environment", "config" or "none"


def resolve(*, server: str | None, api_key: str | None) -> Settings:
    stored = load()
    chosen_server = server or os.environ.get("SPHERON_SERVER") or stored.get("server") or DEFAULT_SERVER
    if api_key:
        key, source = api_key, "option"
    elif os.environ.get("SPHERON_API_KEY"):
        key, source = os.environ["SPHERON_API_KEY"], "environment"
    elif stored.get("api_key"):
        key, source = stored["api_key"], "config"
    else:
        key, source = None, "none"
    return Settings(server=normalize_server(chosen_server), api_key=key, key_source=source)
