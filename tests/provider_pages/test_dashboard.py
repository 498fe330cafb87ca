"""The dashboard: summary cards, and a nodes table that refreshes itself through an htmx fragment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import WalletLink
from billing.earnings import earnings_settle_due
from billing.payouts import payout_request_create
from billing.services import hold_capture, hold_place, topup_credit
from chain.registry import ChainAddresses, registry_sync
from providers import services
from providers.models import NodeStatus
from tests.factories import make_node, make_user
from tests.provider_pages.conftest import heartbeat, register

pytestmark = pytest.mark.django_db

FRAGMENT = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "section#nodes-table"}


def test_empty_dashboard_shows_the_three_steps_with_this_sites_url(provider_client):
    page = provider_client.get("/provider/").content.decode()
    assert "No nodes yet" in page
    assert "Create a node token" in page and 'href="/provider/tokens/"' in page
    assert "fizz start --server http://testserver --token &lt;token&gt;" in page
    assert "It appears here" in page


def test_nodes_table_lists_a_registered_node_with_status_last_seen_and_utilization(provider_client, token, client):
    body = register(client, token)
    heartbeat(
        client,
        body["node_id"],
        body["node_secret"],
        sequence=1,
        usage={"cpu_percent": 12.5, "memory_used_gb": 10.2, "gpu_utilization_percent": [35.0]},
    )
    page = provider_client.get("/provider/").content.decode()
    # Named after its token's label ("box 1"), not the machine's hostname.
    assert f'<a href="/provider/nodes/{body["node_id"]}/"><strong>box 1</strong></a>' in page
    assert '<span class="badge state-online" data-testid="node-status">online</span>' in page
    assert "GPU 35% · CPU 12% · 10.2 GB RAM" in page  # from the heartbeat in the cache
    assert "s ago</time>" in page
    assert "Medium 1" in page  # the RTX 4090's GPU tier, by name
    assert "cool-down" in page  # a node that just came online waits 3 hours for rewards
    assert '<p class="price" id="nodes-online" data-testid="nodes-online">1 <small>of 1</small></p>' in page


def test_htmx_refresh_returns_only_the_table_and_the_online_count(provider_client, provider):
    make_node(provider=provider, name="box-a", status=NodeStatus.ONLINE)
    make_node(provider=provider, name="box-b", status=NodeStatus.OFFLINE)
    response = provider_client.get("/provider/", **FRAGMENT)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="nodes-table"')
    assert "<html" not in html and "topbar" not in html and "earnings-card" not in html
    assert html.count('data-testid="node-row"') == 2
    assert 'hx-trigger="every 5s"' in html  # the fresh table keeps polling
    # The card outside the table is swapped out of band, so the two never disagree.
    oob = '<p class="price" id="nodes-online" data-testid="nodes-online" hx-swap-oob="true">1 <small>of 2</small>'
    assert oob in html
    assert "HX-Target" in response["Vary"]


def test_the_full_page_has_the_polling_table(provider_client, provider):
    make_node(provider=provider, name="box-a")
    html = provider_client.get("/provider/").content.decode()
    assert "<html" in html
    assert 'id="nodes-table"' in html and 'hx-get="/provider/"' in html and 'hx-swap="outerHTML"' in html
    assert "hx-swap-oob" not in html


def test_a_history_restore_gets_the_whole_page(provider_client, provider):
    html = provider_client.get("/provider/", HTTP_HX_HISTORY_RESTORE_REQUEST="true", **FRAGMENT).content.decode()
    assert "<html" in html


def test_the_table_shows_each_state_and_flag(provider_client, provider):
    now = timezone.now()
    make_node(provider=provider, name="seen-12s", last_seen_at=now - timedelta(seconds=12))
    make_node(provider=provider, name="in-maint", in_maintenance=True)
    make_node(provider=provider, name="pending-one", status=NodeStatus.PENDING, last_seen_at=None)
    make_node(provider=provider, name="flagged", needs_review=True, review_reason="claimed 24 GB VRAM, found 8")
    make_node(provider=provider, name="unstaked", stake_covered=False, status=NodeStatus.OFFLINE)
    html = provider_client.get("/provider/", **FRAGMENT).content.decode()
    rows = {row.split("<strong>")[1].split("</strong>")[0]: row for row in html.split('data-testid="node-row"')[1:]}
    assert ">12 s ago</time>" in rows["seen-12s"]
    assert 'data-testid="node-status">maintenance<' in rows["in-maint"]
    assert 'data-testid="node-status">pending<' in rows["pending-one"] and "never" in rows["pending-one"]
    assert "needs review" in rows["flagged"] and "claimed 24 GB VRAM, found 8" in rows["flagged"]
    assert 'data-testid="node-status">offline<' in rows["unstaked"]
    assert "not matchable: stake" in rows["unstaked"]
    assert "not matchable: stake" not in rows["seen-12s"]


def test_another_providers_nodes_are_not_listed(provider_client, outsider):
    make_node(provider=outsider, name="their-box")
    html = provider_client.get("/provider/").content.decode()
    assert "their-box" not in html and "No nodes yet" in html


def test_stake_card_warns_and_names_uncovered_nodes(client, outsider):
    # The outsider has no stake: its agent-run node is not matchable.
    make_node(provider=outsider, name="garage-1", gpu_count=1)
    services.stake_coverage_refresh(provider=outsider)
    client.force_login(outsider.user)
    html = client.get("/provider/").content.decode()
    assert 'data-testid="stake-warning"' in html
    assert "Your stake is 200 $SPON short." in html
    assert "garage-1" in html.split('data-testid="stake-warning"')[1].split("</div>")[0]
    assert 'href="/billing/earnings/"' in html


def test_a_covered_provider_sees_no_stake_warning(provider_client, provider):
    make_node(provider=provider, name="box-a")
    services.stake_coverage_refresh(provider=provider)
    html = provider_client.get("/provider/").content.decode()
    assert 'data-testid="stake-warning"' not in html
    assert "2,000 <small>of 200 $SPON needed</small>" in html


def test_the_stake_card_says_demo_nodes_need_no_stake(provider_client, provider):
    make_node(provider=provider, name="box-a")
    make_node(provider=provider, name="demo-box", gpu_count=8, is_simulated=True)
    html = provider_client.get("/provider/").content.decode()
    assert "× 1 GPU (the 8 GPUs of demo nodes need none)" in html
    assert "of 200 $SPON needed" in html
    stake_page = provider_client.get("/provider/stake/").content.decode()
    assert "(the 8 GPUs of demo nodes need none)" in stake_page


def test_a_demo_node_says_it_sends_no_heartbeats_instead_of_a_growing_last_seen(provider_client, provider):
    real = make_node(provider=provider, name="box-a", last_seen_at=timezone.now() - timedelta(seconds=20))
    demo = make_node(
        provider=provider, name="demo-box", is_simulated=True, last_seen_at=timezone.now() - timedelta(hours=5)
    )
    html = provider_client.get("/provider/").content.decode()
    rows = {row.split('data-node-id="')[1].split('"')[0]: row for row in html.split('data-testid="node-row"')[1:]}
    assert "demo, no agent" in rows[str(demo.id)] and "hours ago" not in rows[str(demo.id)]
    assert "s ago" in rows[str(real.id)] and "demo, no agent" not in rows[str(real.id)]
    demo_page = provider_client.get(f"/provider/nodes/{demo.id}/").content.decode()
    assert 'data-testid="demo-node-note"' in demo_page and "a demo node sends no heartbeats" in demo_page
    assert 'data-testid="demo-node-note"' not in provider_client.get(f"/provider/nodes/{real.id}/").content.decode()


def test_the_earnings_card_shows_pending_settled_and_payable(provider_client, provider):
    empty = provider_client.get("/provider/").content.decode()
    card = empty.split('data-testid="earnings-card"')[1].split("</div>")[0]
    assert 'data-micros="0"' in card and "$0.00 pending" in card and "$0.00 can be paid out" in card

    renter = make_user()
    topup_credit(user=renter, amount=50_000_000, reference_type="test", reference_id="t", idempotency_key="t")
    hold = hold_place(user=renter, amount=10_000_000, reference_type="test", reference_id="h")
    # $3.00 charged (no fee): settles after the hold period; then $0.25 more, still pending.
    hold_capture(hold=hold, amount=3_000_000, payee=provider.user, fee_rate=0, idempotency_key="c1", memo="Usage")
    earnings_settle_due(now=timezone.now() + timedelta(hours=73))
    hold_capture(hold=hold, amount=250_000, payee=provider.user, fee_rate=0, idempotency_key="c2", memo="Usage")
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver="0x" + "11" * 20)})
    WalletLink.objects.create(
        user=provider.user, address="0x" + "ab" * 20, purpose="payout", chain_id=8453, message="signed",
        signature="0x" + "00" * 65, linked_at=timezone.now(),
    )  # fmt: skip
    payout_request_create(user=provider.user, amount=1_000_000, chain="base", token="native")

    html = provider_client.get("/provider/").content.decode()
    card = html.split('data-testid="earnings-card"')[1].split("</div>")[0]
    assert 'data-micros="3250000"' in card and ">$3.25</a>" in card
    assert "$0.25 pending, settled 72 hours after each hourly charge" in card
    assert "$2.00 can be paid out" in card  # $3.00 settled, $1.00 already requested
    assert 'href="/billing/earnings/"' in card


def test_a_provider_with_only_demo_nodes_is_not_told_of_zero_needed(provider_client, provider):
    make_node(provider=provider, name="demo-box", gpu_count=8, is_simulated=True)
    html = provider_client.get("/provider/").content.decode()
    card = html.split('data-testid="stake-card"')[1].split("</div>")[0]
    assert "of 0 $SPON needed" not in card
    assert "<small>$SPON staked</small>" in card
    assert "the 8 GPUs of demo nodes need no stake; a machine you add needs 200 $SPON per GPU" in card


def test_the_nodes_table_counts_gpus_but_not_a_cpu_only_machine(provider_client, provider):
    make_node(provider=provider, name="gpu box", gpu_model="rtx4090", gpu_count=2)
    make_node(provider=provider, name="cpu box", gpu_model="cpu-general", cpu_cores=64)

    page = provider_client.get("/provider/").content.decode()

    assert "2× GeForce RTX 4090" in page
    assert "CPU only (General" in page and "1× CPU only" not in page
