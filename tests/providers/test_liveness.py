"""Heartbeats go to the cache; the fold moves them to the database, takes silent nodes offline,
and challenges check that what a node offers is really there."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import clock
from providers import liveness
from providers.models import (
    ChallengeStatus,
    Node,
    NodeChallenge,
    NodeEvent,
    NodeEventKind,
    NodeOutage,
    NodeStatus,
    OutageKind,
)
from tests.providers.conftest import hardware_report, post

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("heartbeat_transport")]


@pytest.fixture
def agent(client, token, settings):
    """A registered node and a function that sends its heartbeats."""
    settings.NODE_CHALLENGES_PER_HOUR = 0  # challenges only where a test asks for them
    body = post(client, "/api/v1/nodes/register", hardware_report(), token).json()

    def beat(**payload):
        response = post(
            client,
            f"/api/v1/nodes/{body['node_id']}/heartbeat",
            {"agent_version": "0.1.0", **payload},
            body["node_secret"],
        )
        assert response.status_code == 200, response.content
        return response.json()

    beat.node_id = body["node_id"]
    return beat


def _node(beat) -> Node:
    return Node.objects.get(id=beat.node_id)


def test_steady_heartbeats_write_nothing_to_the_database(agent):
    agent(sequence=1)  # the first one brings the node online: a write
    with CaptureQueriesContext(connection) as queries:
        for sequence in range(2, 12):
            agent(sequence=sequence, usage={"cpu_percent": 12.5})
    writes = [q["sql"] for q in queries if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    assert len(queries) <= 1  # the credentials, once, after the online transition dropped them from the cache
    assert liveness.last_heartbeats([agent.node_id])[agent.node_id]["usage"]["cpu_percent"] == 12.5


def test_fold_moves_last_seen_in_batches_at_most_once_a_resolution(agent, settings):
    agent(sequence=1)
    first_seen = _node(agent).last_seen_at
    clock.advance(30)
    agent(sequence=2)
    liveness.fold_heartbeats()
    assert _node(agent).last_seen_at == first_seen  # 30 s < the 60 s resolution
    clock.advance(31)
    agent(sequence=3, usage={"cpu_percent": 50.0})
    stats = liveness.fold_heartbeats()
    node = _node(agent)
    assert stats["updated"] == 1 and node.last_seen_at > first_seen and node.usage["cpu_percent"] == 50.0


def test_a_silent_node_goes_offline_at_its_last_heartbeat_and_comes_back(agent, settings):
    agent(sequence=1)
    last_beat = liveness.last_heartbeats([agent.node_id])[agent.node_id]["at"]
    clock.advance(settings.NODE_OFFLINE_AFTER_SECONDS - 1)
    assert liveness.fold_heartbeats()["offline"] == 0
    clock.advance(2)
    assert liveness.fold_heartbeats()["offline"] == 1
    node = _node(agent)
    assert node.status == NodeStatus.OFFLINE
    outage = NodeOutage.objects.get(node=node, kind=OutageKind.OFFLINE)
    assert outage.started_at == last_beat and outage.ended_at is None

    clock.advance(600)
    reply = agent(sequence=2)
    assert reply["status"] == "online"
    outage.refresh_from_db()
    node = _node(agent)
    assert outage.ended_at is not None and (outage.ended_at - outage.started_at).total_seconds() >= 660
    assert node.status == NodeStatus.ONLINE
    # Reconnected: availability counts for rewards only after the 3-hour cool-down.
    assert node.rewards_eligible_from - node.online_since == timedelta(hours=3)
    kinds = list(NodeEvent.objects.filter(node=node).order_by("at", "id").values_list("kind", flat=True))
    assert kinds == [NodeEventKind.REGISTERED, NodeEventKind.ONLINE, NodeEventKind.OFFLINE, NodeEventKind.ONLINE]


def test_a_clean_stop_takes_the_node_offline_at_once(agent):
    agent(sequence=1)
    reply = agent(sequence=2, stopping=True)
    assert reply["status"] == "offline" and reply["assignments"] == []
    assert _node(agent).status == NodeStatus.OFFLINE
    assert NodeEvent.objects.filter(node_id=agent.node_id, kind=NodeEventKind.STOPPED).exists()


def test_simulated_demo_nodes_are_not_timed_out(db):
    from tests.factories import make_node

    demo = make_node(is_simulated=True, status=NodeStatus.ONLINE)
    clock.advance(3600)
    liveness.fold_heartbeats()
    demo.refresh_from_db()
    assert demo.status == NodeStatus.ONLINE


def _measured(**overrides):
    measured = {
        "agent_version": "0.1.0",
        "cpu_cores": 16,
        "memory_gb": 64,
        "memory_available_gb": 60,
        "storage_free_gb": 880,
        "gpus": [{"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564, "memory_free_mib": 24000}],
    }
    measured.update(overrides)
    return measured


def _challenged(agent, settings):
    settings.NODE_CHALLENGES_PER_HOUR = 10**9  # a challenge with every heartbeat
    reply = agent(sequence=1)
    settings.NODE_CHALLENGES_PER_HOUR = 0
    (challenge,) = reply["challenges"]
    return challenge


def test_a_truthful_answer_passes(agent, settings):
    challenge = _challenged(agent, settings)
    reply = agent(sequence=2, challenge_responses=[{**challenge, "measured": _measured()}])
    assert reply["challenges"] == []
    row = NodeChallenge.objects.get(public_id=challenge["id"])
    assert row.status == ChallengeStatus.PASSED and row.measured["cpu_cores"] == 16
    assert not NodeOutage.objects.filter(kind=OutageKind.CHALLENGE).exists()


@pytest.mark.parametrize(
    ("measured", "reason", "flagged"),
    [
        (_measured(memory_available_gb=10), "GB of memory free", False),
        (_measured(storage_free_gb=100), "GB of disk free", False),
        (_measured(cpu_cores=8), "registered 16 CPU cores, found 8", True),
        (_measured(gpus=[]), "registered 1 GPU(s), found 0", True),
        (
            _measured(gpus=[{"name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576, "memory_free_mib": 24000}]),
            "the GPUs report rtx3090",
            True,
        ),
        (
            _measured(gpus=[{"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564, "memory_free_mib": 100}]),
            "GPU(s) with free VRAM",
            False,
        ),
        (_measured(agent_version="0.0.9"), "older than", False),
    ],
)
def test_a_short_answer_fails_counts_as_downtime_and_lies_flag_the_node(agent, settings, measured, reason, flagged):
    challenge = _challenged(agent, settings)
    agent(sequence=2, challenge_responses=[{**challenge, "measured": measured}])
    row = NodeChallenge.objects.get(public_id=challenge["id"])
    assert row.status == ChallengeStatus.FAILED and reason in row.failure_reason
    penalty = NodeOutage.objects.get(node_id=agent.node_id, kind=OutageKind.CHALLENGE)
    assert (penalty.ended_at - penalty.started_at).total_seconds() == settings.NODE_CHALLENGE_PENALTY_SECONDS
    node = _node(agent)
    assert node.needs_review is flagged
    if flagged:
        assert reason in node.review_reason


def test_a_wrong_nonce_fails_and_an_unknown_challenge_is_ignored(agent, settings):
    challenge = _challenged(agent, settings)
    agent(sequence=2, challenge_responses=[{"id": "nope", "nonce": "x", "measured": _measured()}])
    assert NodeChallenge.objects.get(public_id=challenge["id"]).status == ChallengeStatus.PENDING
    agent(sequence=3, challenge_responses=[{**challenge, "nonce": "forged", "measured": _measured()}])
    assert NodeChallenge.objects.get(public_id=challenge["id"]).status == ChallengeStatus.FAILED


def test_an_unanswered_challenge_is_missed_and_penalised(agent, settings):
    challenge = _challenged(agent, settings)
    clock.advance(settings.NODE_CHALLENGE_TTL_SECONDS + 1)
    agent(sequence=2)  # keeps beating, ignores the challenge
    assert liveness.fold_heartbeats()["missed"] == 1
    assert NodeChallenge.objects.get(public_id=challenge["id"]).status == ChallengeStatus.MISSED
    assert NodeOutage.objects.filter(node_id=agent.node_id, kind=OutageKind.CHALLENGE).count() == 1


def test_challenges_come_at_the_configured_rate(agent, settings):
    settings.NODE_CHALLENGES_PER_HOUR = 240  # with 15 s heartbeats: one in every beat
    assert len(agent(sequence=1)["challenges"]) == 1
    settings.NODE_CHALLENGES_PER_HOUR = 0
    assert len(agent(sequence=2)["challenges"]) == 1  # still pending: sent again until answered
    assert NodeChallenge.objects.filter(node_id=agent.node_id).count() == 1


def test_maintenance_nodes_get_no_challenges(agent, settings, provider):
    from providers import services

    agent(sequence=1)
    services.node_maintenance_set(provider=provider, node_id=agent.node_id, on=True)
    settings.NODE_CHALLENGES_PER_HOUR = 10**9
    reply = agent(sequence=2)
    assert reply["maintenance"] is True and reply["challenges"] == []
