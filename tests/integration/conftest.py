"""Shared by the integration tests that install packages with pip (tests/integration/test_*install*)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.needs import unavailable


@pytest.fixture(scope="session")
def pip_index(tmp_path_factory) -> None:
    """pip can fetch the agent's pinned dependencies (from PyPI or whatever index pip is set up with)."""
    dest: Path = tmp_path_factory.mktemp("pip-probe")
    try:
        probe = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(dest), "httpx==0.28.1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        unavailable("pip could not reach the package index within 120 s")
    if probe.returncode != 0:
        unavailable(f"pip cannot reach the package index: {probe.stderr.strip()[-300:]}")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without this test run's virtualenv on PATH (so `python3` is the machine's,
    as on a provider's machine) and without variables that would steer Python or the agent."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MAKELEVEL"}
        and not key.startswith("FIZZ_")
    }
    env.update(PATH=path or "/usr/local/bin:/usr/bin:/bin", **extra)
    return env
