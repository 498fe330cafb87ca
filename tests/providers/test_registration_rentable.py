"""The register reply tells the agent what the node lacks (`warnings`) and what makes it rentable
(`rentable`: the provider's stake per GPU, a CPU-only machine counting as one); see sdk/PROTOCOL.md."""

from __future__ import annotations

import pytest

from providers import services
from tests.factories import make_user
from tests.providers.conftest import hardware_report, post

pytestmark = pytest.mark.django_db
REGISTER = "/api/v1/nodes/register"


def _register(client, token: str, report: dict) -> dict:
    response = post(client, REGISTER, report, token)
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def unstaked_token(db) -> str:
    profile = services.provider_onboard(
        user=make_user(is_provider=True),
        display_name="New Provider",
        payout_evm_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        default_region="us-east",
        default_mode="fizz",
    )
    _row, raw = services.node_token_create(provider=profile, label="laptop")
    return raw


def test_a_covered_gpu_node_is_told_it_is_rentable(client, token, settings):
    settings.MIN_STAKE_PER_GPU_SPON = "200"
    body = _register(client, token, hardware_report())  # one RTX 4090; the provider staked 2,000 $SPON
    rentable = body["rentable"]
    assert rentable["stake_covered"] is True
    assert (rentable["min_stake_per_gpu_spon"], rentable["units"]) == ("200", 1)
    assert (rentable["staked_spon"], rentable["required_spon"]) == ("2000", "200")
    assert rentable["message"].startswith("Renters can be matched to this node while it is online")
    assert "200 $SPON staked per GPU (a CPU-only machine counts as one)" in rentable["message"]


def test_a_cpu_only_machine_without_stake_is_told_what_to_stake_and_what_it_lacks(client, unstaked_token, settings):
    settings.MIN_STAKE_PER_GPU_SPON = "200"
    report = hardware_report(gpus=[], cores=4)
    report["hardware"]["storage_gb"] = 20
    body = _register(client, unstaked_token, report)
    assert body["warnings"] == [
        "Fizz nodes should have at least 8 CPU cores; this one has 4.",
        "Fizz nodes should have at least 100 GB of free disk; this one has 20.",
    ]
    rentable = body["rentable"]
    assert rentable["stake_covered"] is False
    assert (rentable["units"], rentable["staked_spon"], rentable["required_spon"]) == (1, "0", "200")
    message = rentable["message"]
    assert message.startswith("Renters cannot be matched to this node until your stake covers it")
    assert "a CPU-only machine counts as one" in message and "Stake 200 $SPON more" in message


def test_a_market_without_a_minimum_stake_says_none_is_needed(client, unstaked_token, settings):
    settings.MIN_STAKE_PER_GPU_SPON = "0"
    rentable = _register(client, unstaked_token, hardware_report())["rentable"]
    assert rentable["stake_covered"] is True
    assert rentable["message"] == "This market needs no stake: renters can be matched to this node while it is online."
