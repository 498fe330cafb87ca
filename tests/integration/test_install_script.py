"""`curl -fsSL <site>/fizz/install.sh | sh`, run as a provider would (dash, a scratch HOME and
directory, the machine's python3) against the live test server, leaves a `fizz` that runs and
registers this machine. Needs the package index for the agent's two dependencies (pip's cache
makes later runs fast): skipped without it, except under CI=true."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from providers import services
from providers.models import Node
from tests.factories import make_user
from tests.integration.conftest import clean_env
from tests.needs import unavailable

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def node_token(db) -> str:
    provider = services.provider_onboard(
        user=make_user(is_provider=True),
        display_name="Home Lab",
        payout_evm_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        default_region="eu-west",
    )
    services.stake_record(provider=provider, kind="stake", amount="1000")
    _row, raw = services.node_token_create(provider=provider, label="this machine")
    return raw


def _install(site: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    url = f"{site}/fizz/install.sh"
    if shutil.which("curl", path=env["PATH"]) is None:
        unavailable("curl is not installed")
    return subprocess.run(
        ["/bin/sh", "-c", f"curl -fsSL {shlex.quote(url)} | sh"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_install_script_leaves_a_working_fizz(live_server, settings, tmp_path, pip_index, node_token):
    settings.NODE_HEARTBEAT_INTERVAL_SECONDS = 1
    settings.NODE_CHALLENGES_PER_HOUR = 0
    if shutil.which("dash") is None:
        unavailable("dash is not installed: the script must work with a POSIX sh, not only bash")
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    home.mkdir()
    scratch.mkdir()
    # No Docker extra: it would fetch the Docker SDK, which `--runtime process` below does not need.
    env = clean_env(HOME=str(home), FIZZ_DOCKER="0", SHELL="/bin/sh")
    (tmp_path / "shims").mkdir()
    (tmp_path / "shims" / "sh").symlink_to(shutil.which("dash"))  # `| sh` is dash, whatever /bin/sh is
    env["PATH"] = f"{tmp_path / 'shims'}:{env['PATH']}"

    installed = _install(live_server.url, env, scratch)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    venv = home / ".spheron-fizz" / "venv"
    out = installed.stdout
    assert f"Installed fizz 0.1.0 in {venv}" in out
    assert f"{venv}/bin/fizz start --server {live_server.url} --token <your token>" in out
    assert f"{live_server.url}/provider/tokens/" in out
    assert list(scratch.iterdir()) == []  # nothing left in the directory it ran from

    fizz = venv / "bin" / "fizz"
    version = subprocess.run([fizz, "version"], env=env, capture_output=True, text=True, timeout=60)
    assert (version.returncode, version.stdout.strip()) == (0, "fizz 0.1.0"), version.stderr
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import spheron_sdk; print(spheron_sdk.__file__)"],
        env=env,
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the served wheel, not the repo

    # The installed agent registers this machine with the printed command and a real token.
    log = tmp_path / "agent.out"
    command = [
        fizz, "start", "--server", live_server.url, "--token", node_token, "--runtime", "process",
        "--config-dir", str(tmp_path / "fizz-config"),
    ]  # fmt: skip
    agent_env = dict(env, FIZZ_MACHINE_ID="install-script-test", FIZZ_NVIDIA_SMI=str(tmp_path / "no-nvidia-smi"))
    with log.open("w") as handle:
        agent = subprocess.Popen(command, env=agent_env, stdout=handle, stderr=subprocess.STDOUT, cwd=scratch)
        try:
            deadline = time.monotonic() + 60
            while "registered as node" not in log.read_text() and time.monotonic() < deadline:
                assert agent.poll() is None, log.read_text()
                time.sleep(0.2)
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=30) == 0, log.read_text()
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    output = log.read_text()
    assert "registered as node" in output, output
    assert Node.objects.count() == 1
    # The server said what makes the node rentable, and the agent printed it.
    assert "Renters can be matched to this node while it is online" in output, output

    # Running the install again updates the agent in the same virtual environment.
    again = _install(live_server.url, env, scratch)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Using the virtual environment in {venv}" in again.stdout
