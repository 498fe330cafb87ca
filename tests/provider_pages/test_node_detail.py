"""A node's page: hardware, live status, uptime chart, heartbeat strip, events, and maintenance."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from providers.models import (
    ChallengeStatus,
    EraOutcome,
    Node,
    NodeChallenge,
    NodeEra,
    NodeEvent,
    NodeEventKind,
    NodeOutage,
    OutageKind,
)
from tests.factories import make_node
from tests.provider_pages.conftest import heartbeat, register

pytestmark = pytest.mark.django_db


def _midnight(days_ago: int):
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


@pytest.fixture
def agent_node(client, token) -> Node:
    body = register(client, token)
    heartbeat(client, body["node_id"], body["node_secret"], sequence=1)
    return Node.objects.get(id=body["node_id"])


def test_node_page_shows_the_reported_hardware(provider_client, agent_node):
    html = provider_client.get(f"/provider/nodes/{agent_node.id}/").content.decode()
    hardware = html.split('data-testid="hardware"')[1].split("</section>")[0]
    assert "NVIDIA GeForce RTX 4090 · 24 GB" in hardware
    assert "AMD Ryzen 9 7950X" in hardware and "16 cores" in hardware
    assert "64 GB" in hardware and "900 GB" in hardware
    assert "Linux 6.1 (Debian GNU/Linux 12)" in hardware and "x86_64" in hardware
    assert "fizz 0.1.0" in hardware and "process runtime" in hardware
    assert "550.54.15 / 12.4" in hardware


def test_a_cpu_only_node_page_shows_no_gpus_and_no_vram(provider_client, provider):
    node = make_node(provider=provider, gpu_model="cpu-basic", vram_gb=32, memory_gb=32)
    html = provider_client.get(f"/provider/nodes/{node.id}/").content.decode()
    hardware = html.split('data-testid="hardware"')[1].split("</section>")[0]
    assert "<dt>GPUs</dt><dd>none</dd>" in hardware
    assert "VRAM" not in hardware and "Any CPU only" not in hardware


@pytest.mark.calendar
def test_outages_show_in_the_uptime_chart_the_strip_and_the_events(midday, provider_client, provider):
    now = timezone.now()
    node = make_node(provider=provider, name="flaky", registered_at=_midnight(4))
    # The day before yesterday (out of reach of the last 24 hours): down 06:00–12:00 UTC, a quarter.
    NodeOutage.objects.create(
        node=node, kind=OutageKind.OFFLINE, started_at=_midnight(2) + timedelta(hours=6),
        ended_at=_midnight(2) + timedelta(hours=12), reason="no heartbeat",
    )  # fmt: skip
    # Within the last 24 hours: one hour down, from 3 h ago to 2 h ago.
    NodeOutage.objects.create(
        node=node, kind=OutageKind.OFFLINE, started_at=now - timedelta(hours=3), ended_at=now - timedelta(hours=2)
    )
    NodeEvent.objects.create(node=node, kind=NodeEventKind.OFFLINE, at=now - timedelta(hours=3), message="no heartbeat")
    NodeEvent.objects.create(node=node, kind=NodeEventKind.ONLINE, at=now - timedelta(hours=2), message="resumed")

    html = provider_client.get(f"/provider/nodes/{node.id}/").content.decode()

    bars = re.findall(r'data-testid="uptime-bar" data-day="([\d-]+)" data-uptime="([\d.]*)"', html)
    assert len(bars) == 30
    by_day = dict(bars)
    assert by_day[_midnight(2).date().isoformat()] == "0.750000"
    assert by_day[_midnight(3).date().isoformat()] == "1.000000"
    assert by_day[_midnight(10).date().isoformat()] == ""  # before registration: no data, not 0 %
    assert 'class="bar poor"' in html  # 75 % is below the 95 % band
    assert "no data (before registration)" in html
    # The text alternative carries the same numbers.
    table = html.split('data-testid="uptime-table"')[1].split("</table>")[0]
    assert "75.00%" in table and "no data" in table

    kinds = re.findall(r'data-testid="strip-cell" data-kind="(\w+)"', html)
    assert len(kinds) == 96  # 24 hours of 15 minutes
    assert kinds.count("down") >= 3 and kinds.count("up") > 80
    assert "UTC: down" in html

    events = html.split('data-testid="events-table"')[1].split("</table>")[0]
    assert events.index("Came online") < events.index("Went offline")  # newest first
    assert "no heartbeat" in events


@pytest.mark.calendar
def test_maintenance_shows_in_the_strip(midday, provider_client, provider):
    now = timezone.now()
    node = make_node(provider=provider, registered_at=now - timedelta(days=2))
    NodeOutage.objects.create(
        node=node, kind=OutageKind.MAINTENANCE, started_at=now - timedelta(hours=5), ended_at=now - timedelta(hours=4)
    )
    html = provider_client.get(f"/provider/nodes/{node.id}/").content.decode()
    kinds = re.findall(r'data-testid="strip-cell" data-kind="(\w+)"', html)
    assert kinds.count("maintenance") >= 3 and "down" not in kinds


@pytest.mark.calendar
def test_challenges_and_eras_are_listed(midday, provider_client, provider):
    now = timezone.now()
    node = make_node(provider=provider)
    NodeChallenge.objects.create(
        public_id="c1", node=node, nonce="n", issued_at=now - timedelta(minutes=30),
        expires_at=now - timedelta(minutes=28), status=ChallengeStatus.FAILED,
        failure_reason="8 GB VRAM free, 24 claimed",
    )  # fmt: skip
    NodeEra.objects.create(
        node=node, started_at=_midnight(1), ended_at=_midnight(0), uptime=0.995,
        outcome=EraOutcome.GOOD, tier_before=7, tier_after=6,
    )  # fmt: skip
    html = provider_client.get(f"/provider/nodes/{node.id}/").content.decode()
    challenges = html.split('data-testid="challenges-table"')[1].split("</table>")[0]
    assert "Failed" in challenges and "8 GB VRAM free, 24 claimed" in challenges
    eras = html.split('data-testid="eras-table"')[1].split("</table>")[0]
    assert "99.50%" in eras and "7 → <strong>6</strong>" in eras


def test_cooldown_and_review_reason_are_explained(provider_client, agent_node):
    Node.objects.filter(id=agent_node.id).update(needs_review=True, review_reason="claimed 64 GB RAM, found 16")
    html = provider_client.get(f"/provider/nodes/{agent_node.id}/").content.decode()
    assert 'data-testid="cooldown-note"' in html and "availability rewards start at" in html
    assert "claimed 64 GB RAM, found 16" in html.split('data-testid="review-reason"')[1]


def test_no_cooldown_note_once_it_is_over(provider_client, agent_node):
    Node.objects.filter(id=agent_node.id).update(rewards_eligible_from=timezone.now() - timedelta(minutes=1))
    html = provider_client.get(f"/provider/nodes/{agent_node.id}/").content.decode()
    assert 'data-testid="cooldown-note"' not in html


def test_status_fragment_for_htmx(provider_client, agent_node):
    response = provider_client.get(
        f"/provider/nodes/{agent_node.id}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="section#node-status"
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="node-status"')
    assert "<html" not in html and "uptime-chart" not in html and "Hardware" not in html
    assert 'data-testid="node-status">online<' in html
    assert 'hx-trigger="every 5s"' in html


def test_maintenance_toggle_creates_the_outage_and_events_and_flips_the_flag(provider_client, agent_node):
    url = f"/provider/nodes/{agent_node.id}/maintenance/"
    response = provider_client.post(url, {"on": "1"})
    assert response.status_code == 302 and response["Location"] == f"/provider/nodes/{agent_node.id}/"
    agent_node.refresh_from_db()
    assert agent_node.in_maintenance
    outage = NodeOutage.objects.get(node=agent_node, kind=OutageKind.MAINTENANCE)
    assert outage.ended_at is None
    assert NodeEvent.objects.filter(node=agent_node, kind=NodeEventKind.MAINTENANCE_ON).count() == 1
    page = provider_client.get(f"/provider/nodes/{agent_node.id}/").content.decode()
    assert "is in maintenance" in page and "End maintenance" in page
    assert 'data-testid="node-status">maintenance<' in page

    provider_client.post(url, {"on": "0"})
    agent_node.refresh_from_db()
    outage.refresh_from_db()
    assert not agent_node.in_maintenance and outage.ended_at is not None
    assert NodeEvent.objects.filter(node=agent_node, kind=NodeEventKind.MAINTENANCE_OFF).count() == 1
    assert "Start maintenance" in provider_client.get(f"/provider/nodes/{agent_node.id}/").content.decode()


def test_maintenance_is_post_only(provider_client, agent_node):
    assert provider_client.get(f"/provider/nodes/{agent_node.id}/maintenance/?on=1").status_code == 405
    agent_node.refresh_from_db()
    assert not agent_node.in_maintenance


def test_another_providers_node_is_a_404_to_view_and_to_toggle(provider_client, outsider):
    theirs = make_node(provider=outsider)
    assert provider_client.get(f"/provider/nodes/{theirs.id}/").status_code == 404
    assert provider_client.post(f"/provider/nodes/{theirs.id}/maintenance/", {"on": "1"}).status_code == 404
    theirs.refresh_from_db()
    assert not theirs.in_maintenance
    assert not NodeOutage.objects.filter(node=theirs).exists()
    assert provider_client.get("/provider/nodes/999999/").status_code == 404
