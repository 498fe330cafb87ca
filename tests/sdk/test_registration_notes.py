"""At its first start the agent prints what the server said about the node it registered: the
registration warnings and what makes the node rentable (sdk/PROTOCOL.md, `warnings`, `rentable`)."""

from __future__ import annotations

import signal
from pathlib import Path

from .conftest import REGISTERED, FakeServer, wait_for

WARNINGS = [
    "Fizz nodes should have at least 8 CPU cores; this one has 4.",
    "Fizz nodes should have at least 100 GB of free disk; this one has 20.",
]
NOT_RENTABLE = {
    "stake_covered": False,
    "min_stake_per_gpu_spon": "200",
    "units": 1,
    "staked_spon": "0",
    "required_spon": "200",
    "message": "Renters cannot be matched to this node yet: this market needs 200 $SPON staked per GPU "
    "(a CPU-only machine counts as one) and your stake, 0 $SPON, covers none of it; stake 200 more.",
}


def _registered_then_stopped(fake_server: FakeServer, start_agent, reply: dict) -> str:
    fake_server.register_replies.append((201, reply))
    agent = start_agent("--server", fake_server.url, "--token", "fzt_" + "b" * 43, "--region", "us-east")
    wait_for(lambda: fake_server.calls("/heartbeat"), what="a heartbeat")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.wait() == 0
    return agent.text()


def test_agent_prints_the_servers_warnings_and_what_makes_the_node_rentable(
    fake_server: FakeServer, start_agent, tmp_path: Path
) -> None:
    output = _registered_then_stopped(
        fake_server, start_agent, {**REGISTERED, "warnings": WARNINGS, "rentable": NOT_RENTABLE}
    )
    lines = output.splitlines()
    for warning in WARNINGS:
        (line,) = [line for line in lines if warning in line]
        assert "WARNING" in line and "server: " in line
    (line,) = [line for line in lines if "Renters cannot be matched to this node yet" in line]
    assert "WARNING" in line and "200 $SPON staked per GPU" in line and "CPU-only machine counts as one" in line
    # ... in the agent's log file too, where `fizz logs` finds them.
    log = (tmp_path / "fizz" / "agent.log").read_text()
    assert WARNINGS[0] in log and "Renters cannot be matched to this node yet" in log


def test_a_covered_node_is_said_to_be_rentable_as_information(
    fake_server: FakeServer, start_agent, tmp_path: Path
) -> None:
    rentable = {
        **NOT_RENTABLE,
        "stake_covered": True,
        "staked_spon": "1000",
        "message": "Renters can be matched to this node while it is online: your stake of 1000 $SPON covers it.",
    }
    output = _registered_then_stopped(fake_server, start_agent, {**REGISTERED, "warnings": [], "rentable": rentable})
    (line,) = [line for line in output.splitlines() if "Renters can be matched to this node" in line]
    assert "INFO" in line
    assert "server: " not in output


def test_a_server_that_sends_neither_field_is_fine(fake_server: FakeServer, start_agent, tmp_path: Path) -> None:
    output = _registered_then_stopped(fake_server, start_agent, dict(REGISTERED))
    assert "registered as node 42" in output
    assert "server: " not in output and "Renters" not in output and "Traceback" not in output
