"""A new provider knows what makes a node rentable before adding one, and the stake card keeps up
with the nodes table: it never says "0 of 0 $SPON needed" beside a node renters cannot be matched to."""

from __future__ import annotations

import pytest
from django.test import Client

from providers import services
from providers.models import Node, NodeStatus
from tests.factories import make_node, make_user
from tests.provider_pages.conftest import register

pytestmark = pytest.mark.django_db

FRAGMENT = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "section#nodes-table"}
CPU_ONLY = {"machine": "cpu-box", "gpus": [], "cores": 16}


def _part(html: str, testid: str) -> str:
    return html.split(f'data-testid="{testid}"')[1].split("</div>")[0]


def test_onboarding_says_what_makes_a_machine_rentable_before_any_is_added(client):
    client.force_login(make_user(is_provider=True))
    page = client.get("/provider/onboarding/").content.decode()
    rules = page.split('data-testid="rentable-rules"')[1].split("</ul>")[0]
    assert "200 $SPON for each GPU" in rules
    assert "A CPU-only machine counts as one unit, like one GPU (200 $SPON)" in rules
    assert "sends heartbeats (online)" in rules


def test_onboarding_follows_the_configured_stake_per_gpu(client, settings):
    settings.MIN_STAKE_PER_GPU_SPON = "350"
    client.force_login(make_user(is_provider=True))
    page = client.get("/provider/onboarding/").content.decode()
    assert "350 $SPON for each GPU" in page and "200 $SPON" not in page


def test_the_empty_dashboard_says_what_makes_a_machine_rentable(provider_client):
    page = provider_client.get("/provider/").content.decode()
    empty = page.split('data-testid="nodes-empty"')[1].split("</section>")[0]
    assert "What makes a machine rentable" in empty
    assert "200 $SPON for each GPU" in empty and "A CPU-only machine counts as one unit" in empty
    assert 'href="/provider/stake/"' in empty
    card = _part(page, "stake-card")
    assert "of 0 $SPON needed" not in card
    assert "None needed yet: a machine you add needs 200 $SPON per GPU (a CPU-only machine counts as one)" in card


def test_a_cpu_only_machine_needs_the_stake_of_one_gpu_as_the_words_say(client, outsider):
    # The words say one unit; the matchmaker matches only stake-covered nodes: 199 $SPON is short.
    _row, raw = services.node_token_create(provider=outsider, label="cpu box")
    node_id = register(client, raw, **CPU_ONLY)["node_id"]
    services.stake_record(provider=outsider, kind="stake", amount="199", reason="almost")
    assert not Node.objects.get(id=node_id).stake_covered
    services.stake_record(provider=outsider, kind="stake", amount="1", reason="one unit")
    assert Node.objects.get(id=node_id).stake_covered
    client.force_login(outsider.user)
    card = _part(client.get("/provider/").content.decode(), "stake-card")
    assert "200 <small>of 200 $SPON needed</small>" in card
    assert "200 $SPON per GPU × 1 CPU-only machine" in card


def test_the_stake_card_refreshes_with_the_table_when_a_node_registers(client, outsider):
    """The page was opened before the machine was added; the 5-second refresh brings the node and
    the stake it needs together, never the node beside a stale "0 of 0"."""
    client.force_login(outsider.user)
    before = client.get("/provider/").content.decode()
    assert "No nodes yet" in before and "of 0 $SPON needed" not in before

    _row, raw = services.node_token_create(provider=outsider, label="cpu box")
    register(Client(), raw, **CPU_ONLY)
    html = client.get("/provider/", **FRAGMENT).content.decode()
    assert html.count('data-testid="node-row"') == 1 and "not matchable: stake" in html
    card = html.split('balance-card" id="stake-card"')[1].split("</div>")[0]
    assert 'hx-swap-oob="true"' in card
    assert "0 <small>of 200 $SPON needed</small>" in card and "× 1 CPU-only machine" in card
    assert "of 0 $SPON needed" not in html
    warning = html.split('id="stake-warning" hx-swap-oob="true"')[1].split("</div>\n</div>")[0]
    assert "Your stake is 200 $SPON short." in warning and "cpu box" in warning

    # Once staked, the next refresh clears the warning (an empty placeholder keeps its place).
    services.stake_record(provider=outsider, kind="stake", amount="200", reason="cover it")
    html = client.get("/provider/", **FRAGMENT).content.decode()
    assert "not matchable: stake" not in html
    assert "200 <small>of 200 $SPON needed</small>" in html
    assert '<div id="stake-warning" hx-swap-oob="true">' in html and 'data-testid="stake-warning"' not in html


def test_gpus_and_cpu_only_machines_add_up_in_units(provider_client, provider):
    make_node(provider=provider, name="gpu-box", gpu_count=2)
    make_node(provider=provider, name="cpu-box", gpu_model="cpu-general", gpu_count=1)
    services.stake_coverage_refresh(provider=provider)
    card = _part(provider_client.get("/provider/").content.decode(), "stake-card")
    assert "2,000 <small>of 600 $SPON needed</small>" in card
    assert "200 $SPON per GPU × 2 GPUs + 1 CPU-only machine" in card
    stake_page = provider_client.get("/provider/stake/").content.decode()
    assert "200 per GPU × 2 GPUs + 1 CPU-only machine" in stake_page


def test_a_disabled_node_is_not_flagged_for_stake_beside_none_needed(client, outsider):
    node = make_node(provider=outsider, name="retired", status=NodeStatus.DISABLED, stake_covered=False)
    client.force_login(outsider.user)
    html = client.get("/provider/").content.decode()
    row = html.split(f'data-node-id="{node.id}"')[1].split("</tr>")[0]
    assert "disabled" in row and "not matchable: stake" not in row
    assert "of 0 $SPON needed" not in html
