"""The venv that `make run` builds (its `install` target) holds a `fizz` that runs.

`make test` installs the test requirements, which happen to include the agent's dependencies, so
only a venv built the way `make run` builds it shows whether `make run`'s fizz works. Needs the
package index (pip's cache makes later runs fast): skipped without it, except under CI=true.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import clean_env
from tests.needs import unavailable

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_make_install_gives_a_fizz_that_runs(tmp_path, pip_index):
    if shutil.which("make") is None:
        unavailable("make is not installed")
    venv = tmp_path / "venv"
    env = clean_env()
    built = subprocess.run(
        ["make", "-C", str(REPO), "install", f"VENV={venv}"], env=env, capture_output=True, text=True, timeout=1200
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert (venv / ".installed").exists()

    version = subprocess.run([venv / "bin" / "fizz", "version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "fizz 0.1.0"

    helped = subprocess.run([venv / "bin" / "fizz", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: fizz")
    for command in ("start", "status", "logs", "stop", "version"):
        assert command in helped.stdout

    # `fizz start` imports what `version` and `--help` need not (httpx, psutil): all of it loads.
    imports = subprocess.run(
        [venv / "bin" / "python", "-c", "import spheron_sdk.fizz.agent, spheron_sdk.fizz.client, httpx, psutil"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imports.returncode == 0, imports.stderr
    check = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout
