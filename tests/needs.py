"""What a test needs from the machine, and what happens when it is missing.

On a developer's machine a test whose part is missing (Chromium, anvil, the fizz agent, localstripe,
PostgreSQL, Redis, Node.js, a package index) is skipped with the reason. Under CI=true it fails
instead: a CI run that silently skipped the real thing would prove nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import pytest

# Where the agent's console script is found; a CI job that installs it elsewhere says so here (and
# pointing it at a missing file shows what CI does without the agent).
FIZZ_ENV = "SPHERON_TEST_FIZZ"


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason`; under CI=true, fail with it."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)", pytrace=False)
    pytest.skip(reason)


def fizz_path() -> Path:
    """The `fizz` console script `pip install -e sdk` puts beside this Python (or $SPHERON_TEST_FIZZ)."""
    override = os.environ.get(FIZZ_ENV)
    return Path(override) if override else Path(sys.executable).with_name("fizz")


def require_fizz_agent() -> Path:
    """The agent's console script, or skip (fail under CI=true) saying how to install it."""
    path = fizz_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        unavailable(f"the fizz agent is not installed at {path}: pip install -e sdk")
    return path
