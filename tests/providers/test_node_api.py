"""The agent-facing API: registration, heartbeats, lease events, and every way to get them wrong."""

from __future__ import annotations

import pytest

from marketplace.deployments import services as deployments
from providers import services
from providers.models import Node, NodeChallenge, NodeEvent, NodeStatus, NodeToken
from tests.providers.conftest import hardware_report, post

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("heartbeat_transport")]

REGISTER = "/api/v1/nodes/register"


def _register(client, token, **kwargs):
    response = post(client, REGISTER, hardware_report(**kwargs), token)
    assert response.status_code in (200, 201), response.content
    return response.json()


def _heartbeat(client, node_id, secret, **body):
    return post(client, f"/api/v1/nodes/{node_id}/heartbeat", {"agent_version": "0.1.0", **body}, secret)


def _counts():
    return (Node.objects.count(), NodeEvent.objects.count(), NodeChallenge.objects.count())


def test_register_creates_a_pending_node_priced_and_tiered_from_its_hardware(client, token, provider):
    response = post(client, REGISTER, hardware_report(), token)
    assert response.status_code == 201
    body = response.json()
    assert body["node_secret"].startswith(f"nsk_{body['node_id']}_")
    assert body["status"] == "pending" and body["trust_tier"] == 7
    assert (body["gpu_model"], body["gpu_tier"], body["mode"]) == ("rtx4090", "medium-1", "fizz")
    node = Node.objects.get(id=body["node_id"])
    assert node.provider == provider and node.region_id == "us-east"
    assert node.gpu_price_per_hour_micros == 175_000  # the Fizz RTX 4090 price
    assert node.vram_gb == 24 and node.cpu_cores == 16 and node.memory_gb == 64
    assert node.secret_hash and body["node_secret"] not in node.secret_hash
    assert NodeToken.objects.get(node=node).machine_id == node.machine_id


def test_same_machine_registers_again_and_gets_the_same_node_with_a_new_secret(client, token):
    first = _register(client, token)
    second = post(client, REGISTER, hardware_report(), token)
    assert second.status_code == 200
    assert second.json()["node_id"] == first["node_id"]
    assert second.json()["node_secret"] != first["node_secret"]
    # The old secret no longer works.
    assert _heartbeat(client, first["node_id"], first["node_secret"]).status_code == 401


def test_a_second_machine_with_the_same_token_is_refused(client, token):
    first = _register(client, token)
    before = _counts()
    response = post(client, REGISTER, hardware_report(machine="machine-b"), token)
    assert response.status_code == 409
    assert f"node {first['node_id']}" in response.json()["message"]
    assert _counts() == before


@pytest.mark.parametrize("credential", [None, "fzt_wrong", "sph_notanodetoken", "x" * 500])
def test_wrong_token_is_401_and_writes_nothing(client, provider, credential):
    before = _counts()
    response = post(client, REGISTER, hardware_report(), credential)
    assert response.status_code == 401
    assert _counts() == before


def test_revoked_token_cannot_register_and_its_node_secret_stops_working(client, token, provider):
    body = _register(client, token)
    assert _heartbeat(client, body["node_id"], body["node_secret"]).status_code == 200
    token_row = NodeToken.objects.get(node_id=body["node_id"])
    services.node_token_revoke(provider=provider, token_id=token_row.id)
    assert _heartbeat(client, body["node_id"], body["node_secret"]).status_code == 401
    assert post(client, REGISTER, hardware_report(), token).status_code == 401


def test_heartbeat_brings_the_node_online(client, token):
    body = _register(client, token)
    response = _heartbeat(client, body["node_id"], body["node_secret"], sequence=1)
    assert response.status_code == 200
    reply = response.json()
    assert reply["status"] == "online" and reply["heartbeat_interval_seconds"] >= 1
    node = Node.objects.get(id=body["node_id"])
    assert node.status == NodeStatus.ONLINE and node.online_since and node.rewards_eligible_from > node.online_since


def test_heartbeat_for_another_providers_node_is_404_and_writes_nothing(client, token, outsider):
    mine = _register(client, token)
    _other_token, raw = services.node_token_create(provider=outsider, label="theirs")
    theirs = _register(client, raw, machine="machine-z")
    before = _counts()
    response = _heartbeat(client, theirs["node_id"], mine["node_secret"])
    assert response.status_code == 404
    assert Node.objects.get(id=theirs["node_id"]).status == NodeStatus.PENDING
    assert _counts() == before


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        '{"sequence": "many"}',
        '{"sequence": true}',
        '{"usage": {"cpu_percent": 150}}',
        '{"stopping": "yes"}',
        '{"agent_version": "0.1\\u0000"}',
        '{"leases": [{"lease_id": 0, "state": "running"}]}',
        "[]",
    ],
)
def test_malformed_heartbeat_is_4xx_and_writes_nothing(client, token, body):
    node = _register(client, token)
    before = _counts()
    response = post(client, f"/api/v1/nodes/{node['node_id']}/heartbeat", body, node["node_secret"])
    assert response.status_code in (400, 422), response.content
    assert "message" in response.json()
    assert Node.objects.get(id=node["node_id"]).status == NodeStatus.PENDING
    assert _counts() == before


def test_oversized_heartbeat_is_400(client, token):
    node = _register(client, token)
    body = '{"agent_version": "' + "x" * (70 * 1024) + '"}'
    response = post(client, f"/api/v1/nodes/{node['node_id']}/heartbeat", body, node["node_secret"])
    assert response.status_code == 400
    assert "too large" in response.json()["message"]
    assert Node.objects.get(id=node["node_id"]).status == NodeStatus.PENDING


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"machine_id": "not-hex"}, "machine_id"),
        ({"runtime": "vm"}, "runtime"),
        ({"price_per_hour": "-1"}, "price_per_hour"),
        ({"price_per_hour": True}, "price_per_hour"),
        ({"hardware": {"cpu_cores": 0, "memory_gb": 8, "storage_gb": 10}}, "hardware.cpu_cores"),
        ({"hardware": {"cpu_cores": "8", "memory_gb": 8, "storage_gb": 10}}, "hardware.cpu_cores"),
    ],
)
def test_malformed_registration_names_the_field_and_writes_nothing(client, token, change, field):
    before = _counts()
    response = post(client, REGISTER, {**hardware_report(), **change}, token)
    assert response.status_code == 422
    assert field in [error["field"] for error in response.json()["extra"]["errors"]]
    assert _counts() == before


def test_unknown_gpu_and_unknown_region_are_explained(client, token):
    unknown = hardware_report(gpus=[{"name": "Matrox Millennium G200", "memory_total_mib": 8}])
    response = post(client, REGISTER, unknown, token)
    assert response.status_code == 400 and "Matrox" in response.json()["message"]
    response = post(client, REGISTER, hardware_report(region="atlantis"), token)
    assert response.status_code == 400 and "atlantis" in response.json()["message"]
    assert Node.objects.count() == 0


def test_fizz_token_refuses_a_multi_gpu_machine_but_provider_mode_takes_it(client, provider):
    gpus = [{"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559, "index": i} for i in range(8)]
    _row, fizz = services.node_token_create(provider=provider, label="fizz", mode="fizz")
    response = post(client, REGISTER, hardware_report(gpus=gpus), fizz)
    assert response.status_code == 400 and "one GPU" in response.json()["message"]
    _row, secure = services.node_token_create(provider=provider, label="dc", mode="provider")
    response = post(client, REGISTER, hardware_report(gpus=gpus), secure)
    assert response.status_code == 400 and "price" in response.json()["message"]  # no list price yet
    services.provider_prices_update(
        provider=provider, gpu_prices={"h100": "2.40"}, cpu_per_core_month="1.00", memory_per_gb_month="0.20",
        storage_per_gb_month="0.02",
    )  # fmt: skip
    response = post(client, REGISTER, hardware_report(gpus=gpus, cores=128), secure)
    assert response.status_code == 201, response.content
    node = Node.objects.get(id=response.json()["node_id"])
    assert (node.mode, node.gpu_model_id, node.gpu_count, node.gpu_tier) == ("provider", "h100", 8, "ultra-high-2")
    assert node.gpu_price_per_hour_micros == 2_400_000 and node.cpu_price_per_core_month_micros == 1_000_000
    # 2,000 $SPON staked covers 10 GPUs at 200 each: the 8-GPU box is covered.
    assert node.stake_covered


def test_cpu_only_machine_registers_as_a_cpu_tier(client, token):
    body = _register(client, token, gpus=[], cores=2)
    assert (body["gpu_model"], body["gpu_tier"]) == ("cpu-basic", "cpu-basic")
    assert any("8 CPU cores" in warning for warning in body["warnings"])


def test_lease_events_reach_the_deployments_service_or_404(client, token, monkeypatch):
    node = _register(client, token)
    url = "/api/v1/leases/7/events"
    event = {"events": [{"type": "log", "stream": "stdout", "lines": ["hello"]}]}
    assert post(client, url, event, node["node_secret"]).status_code == 404
    received = []

    def handler(node_id, lease_id, events):
        received.append((node_id, lease_id, events[0]["lines"]))
        return lease_id == 7

    monkeypatch.setattr(deployments, "lease_events", handler)
    response = post(client, url, event, node["node_secret"])
    assert response.status_code == 202 and response.json() == {"accepted": 1}
    assert received == [(node["node_id"], 7, ["hello"])]
    too_many = {"events": [{"type": "log", "lines": ["x"] * 1001}]}
    assert post(client, url, too_many, node["node_secret"]).status_code == 422
    assert post(client, url, event, "nsk_1_wrong").status_code == 401
