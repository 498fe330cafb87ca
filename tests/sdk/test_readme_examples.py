"""The README's "Python SDK" and "sphnctl" examples, run as written against the live test server.

The convention the README states: examples read the server and the key from SPHERON_SERVER and
SPHERON_API_KEY, and a ```yaml block whose info string names a file (```yaml spec.yaml) is that
file in the directory the examples run in. Each ```python block runs as its own script, each
```sh block in bash with -euo pipefail (so every command in it must succeed). Meanwhile a thread
plays matching and the node's agent: each deployment of the README's spec is matched, reported
running and given log lines, as a real agent would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chain.registry import ChainAddresses, registry_sync
from marketplace.deployments import services as deployments
from marketplace.models import Deployment, DeploymentStatus
from providers import services as provider_services
from tests.deployments import conftest as deployments_conftest
from tests.factories import make_node, make_provider
from tests.sdk import test_client_live as client_tests
from tests.sdk.test_client_live import api_key

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
market = deployments_conftest.market
owner = client_tests.owner
_sqlite_reads_do_not_wait = client_tests._sqlite_reads_do_not_wait

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    following = text.find("\n## ", start + 1)
    return text[start : following if following != -1 else len(text)]


def blocks(heading: str) -> list[tuple[str, str, str]]:
    """(language, the rest of the info string, body) of each fenced block of a README section."""
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(section(README.read_text(), heading))]


def test_the_sections_hold_the_examples_this_test_runs():
    sdk, cli = blocks("Python SDK"), blocks("sphnctl")
    assert [lang for lang, _info, _body in sdk] == ["yaml", "python", "python", "python"]
    assert sdk[0][1] == "spec.yaml"
    assert [lang for lang, _info, _body in cli] == ["sh", "sh"]
    for _lang, _info, body in sdk[1:]:
        assert 'os.environ["SPHERON_SERVER"]' in body and 'os.environ["SPHERON_API_KEY"]' in body


class Agent(threading.Thread):
    """Matching and the node's agent for the README's spec: match, running, two log lines."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.handled: set[int] = set()
        self.errors: list[BaseException] = []
        self.outcomes: list[tuple[int, str, str]] = []  # each match tried: for a timeout's message

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - kept for the test's message; the next round tries again
                self.errors.append(exc)
                if len(self.errors) > 50:
                    return

    def step(self) -> None:
        waiting = Deployment.objects.filter(status__in=[DeploymentStatus.PENDING, DeploymentStatus.MATCHED])
        for deployment in waiting.exclude(id__in=self.handled):
            if deployment.spec["services"][0]["image"] != "python:3.12-slim":
                continue  # the model store's deployments are created and closed at once
            lease = deployment.leases.order_by("-id").first()  # matched already (by a worker)
            if lease is None:
                outcome = deployments.match_order(order_id=deployment.orders.get().id)
                self.outcomes.append((deployment.id, outcome.status, outcome.reason))
                if outcome.lease is None:
                    continue  # not claimable yet: the next round tries again
                lease = outcome.lease
            self.handled.add(deployment.id)
            deployments.lease_events(
                lease.node_id,
                lease.id,
                [{"type": "running"}, {"type": "log", "stream": "stdout", "lines": ["hi", "bye"]}],
            )


@pytest.fixture
def examples(live_server, owner, market, tmp_path):
    """The directory the examples run in, their environment, and the agent thread."""
    profile = make_provider(user=owner, display_name="README Provider")
    make_node(provider=profile, name="readme-rig", gpu_model="h100", mode="provider", trust_tier=2)
    provider_services.stake_record(provider=profile, kind="stake", amount="400", reason="readme")
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver="0x" + "33" * 20)})
    workdir = tmp_path / "examples"
    workdir.mkdir()
    for lang, info, body in blocks("Python SDK"):
        if lang == "yaml" and info:
            (workdir / info).write_text(body)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SPHERON_", "DJANGO_", "DATABASE_"))}
    environment |= {
        "SPHERON_SERVER": live_server.url,
        "SPHERON_API_KEY": api_key(owner),
        "SPHERON_CONFIG_DIR": str(tmp_path / "config"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
    }
    agent = Agent()
    agent.start()
    yield workdir, environment, agent
    agent.stop.set()
    agent.join(timeout=10)


def run_block(
    command: list[str], workdir: Path, environment: dict[str, str], agent: Agent
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"timed out; the agent: {agent.errors!r}, {agent.outcomes!r}; output so far: {exc.stdout!r}"
        ) from None


def test_the_python_sdk_examples_run_as_written(examples):
    workdir, environment, agent = examples
    scripts = [body for lang, _info, body in blocks("Python SDK") if lang == "python"]
    outputs = []
    for number, body in enumerate(scripts, 1):
        script = workdir / f"example_{number}.py"
        script.write_text(body)
        done = run_block([sys.executable, str(script)], workdir, environment, agent)
        assert done.returncode == 0, f"example {number}:\n{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        outputs.append(done.stdout)
    deploy, store, provider = outputs
    assert "stdout hi\nstdout bye\nTrue\n" in deploy  # the logs, then the proof verified
    assert "RateLimit(policy='read'" in deploy
    assert "vllm-8b 24 ['VLLM_API_KEY', 'HF_TOKEN']" in store and "'node_id': " in store
    assert "400 of" in provider and "7 days:" in provider
    assert Deployment.objects.filter(status=DeploymentStatus.CLOSED).count() == 2


def test_the_sphnctl_examples_run_as_written(examples):
    workdir, environment, agent = examples
    scripts = [body for lang, _info, body in blocks("sphnctl") if lang == "sh"]
    outputs = []
    for number, body in enumerate(scripts, 1):
        done = run_block(["bash", "-euo", "pipefail", "-c", body], workdir, environment, agent)
        assert done.returncode == 0, f"example {number}:\n{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        outputs.append(done.stdout)
    assert (Path(environment["SPHERON_CONFIG_DIR"]) / "config.json").exists()  # login stored the key
    deploy, more = outputs
    assert "hi\nbye\n" in deploy and "verified" in deploy
    assert re.fullmatch(r"\d+\.\d{6}", deploy.splitlines()[-1])  # jq's .available
    assert "/billing/topup/?amount=25.00" in more and "chain=base&token=ETH&usd=20.00" in more
    assert "fizz 0.1" in more
    assert "node: " in (workdir / "jupyter.yaml").read_text()  # the rendered spec, pinned
    assert Deployment.objects.filter(status=DeploymentStatus.CLOSED).count() == 2
