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
from django.db import connection

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


class _NotPostgreSQL:
    """The condition of `requires_postgresql`'s skipif, read when each test is set up (not when the
    module is imported): true, so skip, on another database; under CI=true it fails the test there
    instead. pytest lets the failure through (it wraps only an Exception from bool(), and a test
    outcome is not one)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __bool__(self) -> bool:
        if connection.vendor == "postgresql":
            return False
        if on_ci():
            unavailable(self.reason)
        return True


def requires_postgresql(why: str) -> pytest.MarkDecorator:
    """A mark for a test (or a module's pytestmark) that needs PostgreSQL `why` (row locks, a test
    database other processes share): elsewhere it is skipped with the reason before any of its
    fixtures is set up, and under CI=true it fails with the reason instead."""
    reason = f"needs PostgreSQL, {why}: set DATABASE_URL=postgres://..."
    return pytest.mark.skipif(_NotPostgreSQL(reason), reason=reason)
