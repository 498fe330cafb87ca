"""Deployment pages: list, new (with "Rent" pre-fill and the live check), detail, logs, close."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from core import clock
from marketplace.deployments import services as deployments
from marketplace.deployments.forms import spec_for_node
from marketplace.deployments.selectors import deployment_cost_so_far
from marketplace.models import Deployment, DeploymentStatus, Lease
from tests.deployment_pages.conftest import create_and_match, spec_text
from tests.factories import make_node, make_user

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def htmx_target(target: str) -> dict[str, str]:
    return {**HTMX, "HTTP_HX_TARGET": f"div#{target}"}


# --- List ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/deployments/", "/deployments/new/", "/deployments/1/"])
def test_pages_need_a_login(path, db):
    response = Client().get(path)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_empty_list_points_to_the_catalog_and_the_editor(owner_client):
    response = owner_client.get("/deployments/")
    html = response.content.decode()
    assert 'data-testid="empty-state"' in html
    assert 'href="/gpus/"' in html and 'href="/deployments/new/"' in html
    assert 'data-testid="nav-deployments"' in html


def test_list_shows_status_gpu_node_price_and_cost(owner_client, owner, outsider, market):
    running, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    clock.advance(3600)
    pending = deployments.deployment_create(user=owner, source=spec_text(price="0.75"))
    deployments.deployment_create(user=outsider, source=spec_text())
    response = owner_client.get("/deployments/")
    html = response.content.decode()
    rows = re.findall(r'data-testid="deployment-row" data-id="(\d+)" data-status="(\w+)"', html)
    assert rows == [(str(pending.id), "pending"), (str(running.id), "running")]  # newest first, only mine
    assert "1× GeForce RTX 4090" in html
    assert f"node {lease.node_id}" in html
    assert "≤ $0.75" in html  # no lease yet: the most it pays
    lease.refresh_from_db()
    cost = deployment_cost_so_far(running)
    assert cost == lease.price_per_hour_micros  # one hour at the locked price
    assert f"${cost / 1_000_000:.6f}" in html
    assert 'hx-trigger="every 5s"' in html  # active ones refresh themselves

    ended = owner_client.get("/deployments/?show=ended").content.decode()
    assert 'data-testid="deployment-row"' not in ended and "Show all" in ended


def test_list_fragment_is_only_the_table(owner_client, owner, market):
    deployments.deployment_create(user=owner, source=spec_text())
    response = owner_client.get("/deployments/", **htmx_target("deployments-table"))
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="deployments-table"') and "<header" not in html


# --- New -------------------------------------------------------------------------------------


def test_new_page_has_a_monospace_editor_that_checks_as_you_type(owner_client):
    html = owner_client.get("/deployments/new/").content.decode()
    assert 'class="spec-text"' in html and 'name="spec"' in html
    assert 'hx-post="/deployments/new/validate/"' in html
    assert 'hx-trigger="input changed delay:400ms"' in html and 'hx-target="#spec-check"' in html
    assert 'data-testid="spec-valid"' in html  # the default template is valid as it stands
    assert "?template=cpu" in html


def test_cpu_template_is_a_valid_cpu_only_job(owner_client):
    html = owner_client.get("/deployments/new/?template=cpu").content.decode()
    assert "gpu:" not in html.split('data-testid="spec-text"')[1].split("</textarea>")[0]
    assert 'data-testid="spec-valid"' in html and "1 CPU" in html


def test_rent_prefills_a_spec_pinned_to_the_node(owner_client, owner, market):
    node = market["good"]
    html = owner_client.get(f"/deployments/new/?node={node.id}").content.decode()
    assert 'data-testid="pinned-node"' in html
    text = spec_for_node(node)
    assert f"node: {node.id}" in text and "model: rtx4090" in text
    assert "mode: fizz" in text and "tiers: [community]" in text and "duration: 1h" in text
    # 1.2 × the node's price for the share ($0.175 GPU + 2 cores, 4 GB, 20 GB ≈ $0.178/h), in cents, up
    assert 'data-testid="spec-valid"' in html and 'data-testid="estimate-hourly">$0.22/h' in html
    # Deploying it as pre-filled lands on that node, at the node's price (below the max).
    response = owner_client.post("/deployments/new/", {"spec": text})
    deployment = Deployment.objects.get(owner=owner)
    assert response.status_code == 302 and response["Location"] == f"/deployments/{deployment.id}/"
    lease = deployments.match_order(order_id=deployment.orders.get().id).lease
    assert lease.node_id == node.id
    assert lease.price_per_hour_micros < deployment.max_price_per_hour_micros


def test_rent_on_a_provider_node_uses_provider_mode(owner_client, market):
    node = market["h100"]
    text = spec_for_node(node)
    assert "mode: provider" in text and "tiers: [secured]" in text and "model: h100" in text
    html = owner_client.get(f"/deployments/new/?node={node.id}").content.decode()
    assert 'data-testid="spec-valid"' in html


def test_rent_on_a_cpu_machine_asks_for_no_gpu(owner_client, owner):
    node = make_node(gpu_model="cpu-basic", cpu_cores=8, memory_gb=16, storage_gb=100, trust_tier=7)
    text = spec_for_node(node)
    assert "gpu:" not in text and "cpu: {units: 2}" in text
    owner_client.post("/deployments/new/", {"spec": text})
    deployment = Deployment.objects.get(owner=owner)
    assert deployments.match_order(order_id=deployment.orders.get().id).lease.node_id == node.id


def test_rent_on_an_unknown_or_busy_node_explains_itself(owner_client, market):
    html = owner_client.get("/deployments/new/?node=999999").content.decode()
    assert "There is no offer with node id 999999" in html
    busy = make_node(available_gpus=0)
    # Not listed: to anyone but its owner (and renters) it is not an offer at all.
    html = owner_client.get(f"/deployments/new/?node={busy.id}").content.decode()
    assert f"There is no offer with node id {busy.id}" in html and "not available to rent" not in html
    owner_client.force_login(busy.provider.user)
    html = owner_client.get(f"/deployments/new/?node={busy.id}").content.decode()
    assert f"Node {busy.id} is not available to rent right now" in html
    assert "There is no offer with node id abc" in owner_client.get("/deployments/new/?node=abc").content.decode()


def test_the_live_check_lists_problems_with_line_numbers(owner_client, market):
    bad = spec_text().replace("gpu: {units: 1", "gpu: {units: 0").replace("mode: fizz", "mode: cloud")
    response = owner_client.post("/deployments/new/validate/", {"spec": bad}, **htmx_target("spec-check"))
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<section id="spec-check"')
    assert "2 problems" in html
    assert re.search(r"line 10</span> <code>services\.app\.resources\.gpu\.units</code>: must be ≥ 1", html)
    assert re.search(r"line 14</span> <code>deployment\.mode</code>: must be &quot;fizz&quot; or", html)


def test_the_live_check_shows_the_estimate(owner_client, market):
    html = owner_client.post("/deployments/new/validate/", {"spec": spec_text(price="0.50", duration="2h")})
    html = html.content.decode()
    assert 'data-testid="estimate-hourly">$0.50/h' in html
    assert 'data-testid="estimate-total">$1.00' in html and "2 h" in html
    assert 'data-testid="estimate-hold">$1.00' in html
    assert "short-balance" not in html
    assert "1× GeForce RTX 4090" in html  # the model's name, not its slug


def test_the_live_check_warns_when_the_balance_is_short(market):
    poor = make_user()
    client = Client()
    client.force_login(poor)
    html = client.post("/deployments/new/validate/", {"spec": spec_text()}).content.decode()
    assert 'data-testid="short-balance"' in html and 'href="/billing/#top-up"' in html


def test_submitting_without_credit_shows_the_message_and_a_top_up_link(market):
    poor = make_user()
    client = Client()
    client.force_login(poor)
    response = client.post("/deployments/new/", {"spec": spec_text()})
    html = response.content.decode()
    assert response.status_code == 402
    assert "Not enough credits" in html and 'data-testid="top-up-link"' in html and "/billing/" in html
    assert not Deployment.objects.exists()
    assert "spec-text" in html and "rtx4090" in html  # the spec is kept for another try


def test_submitting_a_broken_spec_keeps_it_and_lists_the_problems(owner_client, market):
    response = owner_client.post("/deployments/new/", {"spec": "services: [1, 2"})
    html = response.content.decode()
    assert response.status_code == 200 and "is not valid YAML" in html and "services: [1, 2" in html
    assert not Deployment.objects.exists()


# --- Detail ----------------------------------------------------------------------------------


def test_detail_shows_stepper_lease_why_commitment_and_logs(owner_client, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    deployments.lease_events(lease.node_id, lease.id, [{"type": "log", "stream": "stdout", "lines": ["hello <b>"]}])
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    states = re.findall(r'data-step="(\w+)" data-state="(\w+)"', html)
    assert states == [
        ("pending", "done"), ("matched", "done"), ("provisioning", "done"), ("running", "current"), ("closed", "todo")
    ]  # fmt: skip
    assert 'hx-trigger="every 2s"' in html  # it updates itself while active
    assert f'data-node-id="{lease.node_id}"' in html and lease.node.provider.display_name in html
    assert f"{lease.node.region.name} ({lease.node.region_id})" in html
    assert 'data-testid="lease-price"' in html and 'data-testid="cost-so-far"' in html
    assert "<dt>Cost so far</dt>" in html and 'data-testid="agent-state">running<' in html
    record = lease.order.match
    assert len(re.findall(r'data-testid="score-row"', html)) == 3
    assert 'data-winner="true"' in html and "×0.3" in html  # the price weight in the header
    assert record.commitment in html and "from spheron_sdk.matching import verify_match" in html
    assert f"/api/v1/deployments/{deployment.id}/match-proof" in html
    assert "hello &lt;b&gt;" in html  # logs are escaped
    assert 'data-testid="close-button"' in html
    kinds = re.findall(r'data-testid="event" data-kind="(\w+)"', html)
    assert kinds == ["created", "matched", "provisioning", "running"]


def test_detail_fragment_is_the_live_part_with_the_timeline_out_of_band(owner_client, owner, market):
    deployment, _lease = create_and_match(owner)
    response = owner_client.get(f"/deployments/{deployment.id}/", **htmx_target("deployment-live"))
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="deployment-live"') and "<header" not in html
    for part in ("deployment-lease", "deployment-why", "deployment-timeline"):
        assert f'<section id="{part}"' in html
    assert html.count('hx-swap-oob="true"') == 3
    assert "HX-Target" in response["Vary"]


def test_polling_stops_once_closed_and_the_agent_confirmed_the_stop(owner_client, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    deployments.deployment_close(deployment=deployment)
    # Closed, but the agent has not reported the stop yet: the page keeps asking, so that the
    # agent's final state shows without a reload.
    fragment = owner_client.get(f"/deployments/{deployment.id}/", **htmx_target("deployment-live")).content.decode()
    assert "hx-trigger" in fragment.split(">")[0] and 'data-testid="agent-state">stopping<' in fragment
    deployments.lease_events(lease.node_id, lease.id, [{"type": "stopped", "message": "stopped by the server"}])
    fragment = owner_client.get(f"/deployments/{deployment.id}/", **htmx_target("deployment-live")).content.decode()
    assert "hx-trigger" not in fragment.split(">")[0] and 'data-testid="agent-state">stopped<' in fragment
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    live = html.split('<div id="deployment-live"')[1].split(">")[0]
    assert "hx-trigger" not in live
    states = dict(re.findall(r'data-step="(\w+)" data-state="(\w+)"', html))
    assert states == {"pending": "done", "matched": "done", "provisioning": "done", "running": "done",
                      "closed": "done"}  # fmt: skip
    assert "Closed by the renter" in html and 'data-testid="close-button"' not in html


def test_a_failed_deployment_shows_the_reason(owner_client, owner, market):
    deployment = deployments.deployment_create(
        user=owner, source=spec_text(model="h100", price="2.00", mode="provider", region="eu-west")
    )
    clock.advance(61)
    deployments.match_order(order_id=deployment.orders.get().id)
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    assert 'data-testid="failure-reason"' in html and "no H100 in eu-west under $2.00/h" in html
    states = dict(re.findall(r'data-step="(\w+)" data-state="(\w+)"', html))
    assert states["failed"] == "failed" and states["matched"] == "skipped"
    assert 'data-testid="why"' in html and "No node was chosen." in html


def test_logs_fragment_appends_only_newer_lines(owner_client, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "log", "stream": "stdout", "lines": ["a", "b"]}])
    page = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    after = int(re.search(r'id="log-poller" data-after="(\d+)"', page).group(1))
    assert page.count('class="ln stdout"') == 2 and "hx-swap-oob" not in page.split('data-testid="log-lines">')[1][:200]
    deployments.lease_events(lease.node_id, lease.id, [{"type": "log", "stream": "stderr", "lines": ["c"]}])
    response = owner_client.get(f"/deployments/{deployment.id}/logs/?after={after}", **htmx_target("log-poller"))
    html = response.content.decode()
    assert '<pre hx-swap-oob="beforeend:#log-lines"><span class="ln stderr">c' in html
    assert ">a\n" not in html
    poller = r'id="log-poller" data-after="(\d+)" hx-get="/deployments/\d+/logs/\?after=\1&amp;lease=\d+"'
    assert re.search(poller, html)
    quiet = owner_client.get(f"/deployments/{deployment.id}/logs/?after={after + 1}", **HTMX).content.decode()
    assert "hx-swap-oob" not in quiet and 'hx-trigger="every 2s"' in quiet
    assert owner_client.get(f"/deployments/{deployment.id}/logs/?after=x", **HTMX).status_code == 400
    raw = owner_client.get(f"/deployments/{deployment.id}/logs/")
    assert raw["Content-Type"].startswith("text/plain")
    assert [line.split(" ", 2)[1:] for line in b"".join(raw.streaming_content).decode().splitlines()] == [
        ["stdout", "a"], ["stdout", "b"], ["stderr", "c"]
    ]  # fmt: skip


def test_log_polling_stops_after_the_end(owner_client, owner, market):
    deployment, _lease = create_and_match(owner)
    deployments.deployment_close(deployment=deployment)
    clock.advance(60)
    html = owner_client.get(f"/deployments/{deployment.id}/logs/?after=0", **HTMX).content.decode()
    assert "hx-trigger" not in html


def test_close_from_the_page(owner_client, owner, market):
    deployment, lease = create_and_match(owner)
    clock.advance(1800)
    response = owner_client.post(f"/deployments/{deployment.id}/close/")
    assert response.status_code == 302 and response["Location"] == f"/deployments/{deployment.id}/"
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.CLOSED and deployment.close_reason == "user_closed"
    html = owner_client.get(response["Location"]).content.decode()
    half_hour = lease.price_per_hour_micros // 2
    assert f"is closed. It cost ${half_hour / 1_000_000:.6f}" in html
    assert "<dt>Total cost</dt>" in html and "Cost so far" not in html
    assert 'data-testid="agent-state">stopping<' in html  # until the agent confirms the stop
    assert owner_client.get(f"/deployments/{deployment.id}/close/").status_code == 405


def test_another_users_deployment_is_404_on_every_page(outsider_client, owner, market):
    deployment, _lease = create_and_match(owner)
    for path in ("", "logs/"):
        assert outsider_client.get(f"/deployments/{deployment.id}/{path}").status_code == 404
    assert outsider_client.post(f"/deployments/{deployment.id}/close/").status_code == 404
    deployment.refresh_from_db()
    assert deployment.is_active
    assert outsider_client.get(f"/deployments/{2**70}/").status_code == 404
    assert f"#{deployment.id}" not in outsider_client.get("/deployments/").content.decode()


def test_failover_shows_in_the_stepper_and_timeline(owner_client, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "provisioning"}, {"type": "running"}])
    deployments.node_leases_fail(node_id=lease.node_id, last_good=clock.now())
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    states = dict(re.findall(r'data-step="(\w+)" data-state="(\w+)"', html))
    assert states["pending"] == "current" and states["running"] == "todo"
    assert "The last node failed; looking for another one." in html
    kinds = re.findall(r'data-testid="event" data-kind="(\w+)"', html)
    assert kinds[-2:] == ["node_failed", "failover"]
    deployments.match_order(order_id=deployment.orders.get(attempt=2).id)
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    assert "on attempt 2 (after a failover)" in html
    new_lease = Lease.objects.get(deployment=deployment, status="active")
    assert f'data-testid="lease-node" data-node-id="{new_lease.node_id}"' in html


# --- Rent links --------------------------------------------------------------------------------


def test_catalog_rows_and_offer_page_have_rent_links(client, market):
    catalog = client.get("/gpus/").content.decode()
    for node in market.values():
        assert f'href="/deployments/new/?node={node.id}" data-testid="rent-link"' in catalog
    offer = client.get(f"/gpus/{market['good'].id}/").content.decode()
    assert f'href="/deployments/new/?node={market["good"].id}"' in offer


def test_logs_mark_where_the_output_moves_to_another_node(owner_client, owner, market):
    deployment, lease = create_and_match(owner)
    deployments.lease_events(lease.node_id, lease.id, [{"type": "log", "stream": "stdout", "lines": ["first"]}])
    deployments.node_leases_fail(node_id=lease.node_id, last_good=clock.now())
    second = deployments.match_order(order_id=deployment.orders.get(attempt=2).id).lease
    deployments.lease_events(second.node_id, second.id, [{"type": "log", "stream": "stdout", "lines": ["again"]}])
    html = owner_client.get(f"/deployments/{deployment.id}/").content.decode()
    log = html.split('data-testid="log-lines">')[1].split("</pre>")[0]
    assert log.index("first") < log.index(f"── lease {second.id} on node {second.node_id} ──") < log.index("again")
    # A poll that starts on the first lease marks the move too.
    first_line = deployment_line_id(deployment, "first")
    poll = owner_client.get(
        f"/deployments/{deployment.id}/logs/?after={first_line}&lease={lease.id}", **HTMX
    ).content.decode()
    assert f"── lease {second.id} on node {second.node_id} ──" in poll and f"lease={second.id}" in poll


def deployment_line_id(deployment, text: str) -> int:
    from marketplace.models import LeaseLogLine

    return LeaseLogLine.objects.get(lease__deployment=deployment, line=text).id
