"""A developer rents a real `fizz` agent's machine through the browser: deploy, watch it run and
log, close it, see the charge; the provider sees the earnings. Then a node dies mid-lease and the
deployment fails over to another agent.

No Celery worker or beat runs in tests. A thread calls the real beat task
(`marketplace.tasks.sweep_open_orders`) every 0.5 s instead: it stands in for beat + a worker that
runs `match_order` (the `.delay()` made on commit goes to the filesystem broker, unread).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from billing.models import LedgerAccount, UsageMeter
from core import clock
from marketplace.deployments import services as deployments
from marketplace.models import Deployment, DeploymentStatus, Lease, LeaseStatus
from providers import liveness, services
from providers.models import Node, NodeStatus
from tests.deployments.conftest import fund
from tests.e2e.beat import order_sweeper
from tests.e2e.login import log_in, log_out, verified_user
from tests.integration.agents import Agent, kill_with_workloads, online_node, staked_provider, wait_for

pytestmark = [
    pytest.mark.usefixtures("live_sqlite_reads"),
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("fizz_agent"),
]
SLOW_MS = 30_000  # matching, the agent's next heartbeat, the process start and its first lines
# A workload that is a process on this machine: the agents run the process runtime.
TICKER = "import time; [print('tick', i, flush=True) or time.sleep(0.5) for i in range(600)]"


def spec(*, node: int | None = None, cpu: int = 1, price: str = "0.05") -> str:
    pinned = f"\n  attributes: {{node: {node}}}" if node else ""
    return f"""version: "2.0"
services:
  ticker:
    image: python:3.12-slim
    command: ["{sys.executable}", "-c", "{TICKER}"]
    resources:
      cpu: {{units: {cpu}}}
      memory: {{size: 2Gi}}
      storage: [{{size: 1Gi}}]
    price: {{token: USD, amount: {price}}}
deployment:
  duration: 1h
  mode: fizz
  tiers: [community]{pinned}
"""


def shot(page: Page, name: str) -> None:
    """Screenshots for a person to look at, when SPHERON_SCREENSHOTS names a directory."""
    folder = os.environ.get("SPHERON_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"dep_{name}.png"), full_page=True)


@pytest.fixture
def provider():
    return staked_provider(verified_user("host@example.test", is_provider=True))


@pytest.fixture
def developer():
    user = verified_user("ada@example.test", name="Ada")
    fund(user, 20)
    return user


def deploy_from_the_editor(page: Page, text: str) -> int:
    """Paste the spec, wait for the live check to call it valid, deploy; the deployment's id."""
    page.fill("#spec-text", text)
    expect(page.get_by_test_id("spec-valid")).to_be_visible()
    expect(page.get_by_test_id("estimate-hourly")).to_have_text("$0.05/h")
    page.get_by_test_id("submit-deployment").click()
    page.wait_for_url("**/deployments/*/")
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def test_developer_deploys_on_a_real_agent_watches_logs_closes_and_both_sides_see_the_money(
    page: Page, fast_server, provider, developer, agents
):
    _row, token = services.node_token_create(provider=provider, label="this machine")
    agent = agents(fast_server, token, "fizz", machine="machine-one").start()
    try:
        node = wait_for(online_node, what="the agent's node to come online")
    except AssertionError:
        pytest.fail(f"agent output:\n{agent.output()}")
    assert node.gpu_model_id.startswith("cpu-") or node.gpu_count >= 1

    with order_sweeper() as sweeper:
        log_in(page, developer.email, "/deployments/")
        expect(page.get_by_test_id("empty-state")).to_contain_text("No deployments yet")
        shot(page, "list_empty")

        # "Rent" on the catalog: the editor opens with a spec pinned to the node.
        page.get_by_role("link", name="GPUs").click()
        page.locator(f'tr[data-node-id="{node.id}"]').get_by_test_id("rent-link").click()
        page.wait_for_url(f"**/deployments/new/?node={node.id}")
        expect(page.get_by_test_id("pinned-node")).to_contain_text(f"Pinned to node {node.id}")
        assert f"node: {node.id}" in page.input_value("#spec-text")
        expect(page.get_by_test_id("spec-valid")).to_be_visible()
        shot(page, "new")

        # Typing a mistake shows it with its line at once, without a reload.
        page.evaluate("window.__marker = 1")
        page.fill("#spec-text", spec(node=node.id).replace("units: 1}", "units: -1}"))
        expect(page.get_by_test_id("spec-error")).to_contain_text("line 7")
        expect(page.get_by_test_id("spec-error")).to_contain_text("services.ticker.resources.cpu.units")
        assert page.evaluate("window.__marker") == 1
        shot(page, "new_error")

        deployment_id = deploy_from_the_editor(page, spec(node=node.id))
        shot(page, "detail_pending")

        # Matched, provisioned and running on the agent, with its output live on the page.
        page.evaluate("window.__marker = 2")
        running = page.locator('[data-step="running"]')
        expect(running).to_have_attribute("data-state", "current", timeout=SLOW_MS)
        expect(page.get_by_test_id("lease-node")).to_have_attribute("data-node-id", str(node.id))
        expect(page.get_by_test_id("log-lines")).to_contain_text("tick 3", timeout=SLOW_MS)
        expect(page.get_by_test_id("score-row")).to_have_count(1)
        expect(page.get_by_test_id("commitment")).to_have_text(
            Lease.objects.get(deployment_id=deployment_id).order.match.commitment
        )
        assert page.evaluate("window.__marker") == 2, "the page reloaded instead of updating itself"
        shot(page, "detail_running")

        page.get_by_role("link", name="Deployments").first.click()
        expect(page.get_by_test_id("deployment-row")).to_have_attribute("data-status", "running")
        shot(page, "list")
        page.get_by_role("link", name=f"#{deployment_id}").click()

        # Close it: the workload stops and the time used is charged.
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id("close-button").click()
        expect(page.locator(".messages")).to_contain_text(f"Deployment #{deployment_id} is closed")
        expect(page.get_by_test_id("close-reason")).to_contain_text("Closed by the renter")
        # The agent hears of the close at its next heartbeat: its final state appears without a reload.
        page.evaluate("window.__marker = 3")
        expect(page.get_by_test_id("agent-state")).to_have_text("stopped", timeout=SLOW_MS)
        assert page.evaluate("window.__marker") == 3, "the page reloaded instead of updating itself"
        expect(page.get_by_test_id("deployment-live")).not_to_have_attribute("hx-trigger", "every 2s", timeout=SLOW_MS)
        assert not sweeper.errors, sweeper.errors

    deployment = Deployment.objects.get(id=deployment_id)
    lease = Lease.objects.get(deployment=deployment)
    meter = UsageMeter.objects.get(id=lease.meter_id)
    assert deployment.status == DeploymentStatus.CLOSED and lease.status == LeaseStatus.CLOSED
    assert meter.closed_at is not None and meter.charged > 0
    # The agent hears of the close at its next heartbeat and stops the process.
    wait_for(lambda: deployment.events.filter(kind="agent_stopped").exists(), what="the agent to stop the workload")

    page.goto("/billing/")
    usage = page.get_by_test_id("transactions-table").locator("tr", has_text="Usage until close")
    expect(usage).to_have_count(1)
    expect(usage).to_contain_text(f"{meter.charged / 1_000_000:.6f}")
    expect(usage.get_by_role("link", name=f"Deployment #{deployment.id}")).to_have_attribute(
        "href", f"/deployments/{deployment.id}/"
    )
    expect(page.get_by_test_id("balance-reserved")).to_have_text("$0.00")
    expect(page.get_by_test_id("balance-available")).to_have_attribute("data-micros", str(20_000_000 - meter.charged))

    log_out(page)
    log_in(page, provider.user.email, "/billing/earnings/")
    pending = LedgerAccount.objects.get(user=provider.user, kind="provider_pending").balance
    assert 0 < pending <= meter.charged
    expect(page.get_by_test_id("earnings-pending")).to_have_attribute("data-micros", str(pending))
    expect(page.get_by_test_id("settlement-row")).to_have_count(1)
    expect(page.get_by_test_id("settlement-row")).to_contain_text(f"Lease #{lease.id} on {lease.node.name}")


def test_a_node_killed_mid_lease_fails_over_to_another_agent(
    page: Page, fast_server, provider, developer, agents, settings
):
    first_token = services.node_token_create(provider=provider, label="box one")[1]
    second_token = services.node_token_create(provider=provider, label="box two")[1]
    by_machine = {
        "machine-one": agents(fast_server, first_token, "fizz-one", machine="machine-one").start(),
        "machine-two": agents(fast_server, second_token, "fizz-two", machine="machine-two").start(),
    }
    wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).count() == 2, what="both agents online")

    with order_sweeper() as sweeper:
        log_in(page, developer.email, "/deployments/new/?template=cpu")
        deployment_id = deploy_from_the_editor(page, spec())
        expect(page.locator('[data-step="running"]')).to_have_attribute("data-state", "current", timeout=SLOW_MS)
        expect(page.get_by_test_id("log-lines")).to_contain_text("tick 2", timeout=SLOW_MS)
        first = Lease.objects.get(deployment_id=deployment_id)
        doomed = Node.objects.get(id=first.node_id)
        survivor = Node.objects.exclude(id=doomed.id).get(is_simulated=False)
        machine = next(m for m, agent in by_machine.items() if _node_of(agent) == doomed.id)
        last_good = liveness.last_heartbeats([doomed.id])[doomed.id]["at"]

        # The node's agent dies without a word.
        kill_with_workloads(by_machine[machine])
        clock.advance(settings.NODE_OFFLINE_AFTER_SECONDS + 1)
        moved_to = clock.now()
        wait_for(
            lambda: liveness.last_heartbeats([survivor.id])[survivor.id]["at"] >= moved_to,
            what="the other agent's heartbeat on the moved clock",
        )
        liveness.fold_heartbeats()
        doomed.refresh_from_db()
        survivor.refresh_from_db()
        assert doomed.status == NodeStatus.OFFLINE and survivor.status == NodeStatus.ONLINE

        # Still silent after the grace period (none here): the lease fails and the order goes out again.
        settings.FAILOVER_GRACE_SECONDS = 0
        assert deployments.node_leases_fail(node_id=doomed.id, last_good=last_good) == 1

        expect(page.get_by_test_id("lease-node")).to_have_attribute("data-node-id", str(survivor.id), timeout=SLOW_MS)
        expect(page.locator('[data-step="running"]')).to_have_attribute("data-state", "current", timeout=SLOW_MS)
        timeline = page.get_by_test_id("timeline")
        expect(timeline.locator('[data-kind="node_failed"]')).to_contain_text(f"Node {doomed.id} stopped heartbeating")
        expect(timeline.locator('[data-kind="failover"]')).to_contain_text(f"excluding node {doomed.id}")
        expect(timeline.locator('[data-kind="running"]')).to_have_count(2)
        expect(page.get_by_test_id("why")).to_contain_text("on attempt 2 (after a failover)")
        # The new node's output follows the old one's in the same log, after a marker.
        expect(page.get_by_test_id("log-lines")).to_contain_text(f"on node {survivor.id} ──", timeout=SLOW_MS)
        shot(page, "detail_failover")
        assert not sweeper.errors, sweeper.errors

    leases = list(Lease.objects.filter(deployment_id=deployment_id).order_by("id"))
    assert [(lease.node_id, lease.status, lease.close_reason) for lease in leases] == [
        (doomed.id, LeaseStatus.CLOSED, "provider_failed"),
        (survivor.id, LeaseStatus.ACTIVE, ""),
    ]
    # Not charged after the last good heartbeat.
    assert UsageMeter.objects.get(id=leases[0].meter_id).closed_at == max(last_good, leases[0].started_at)


def _node_of(agent: Agent) -> int | None:
    """The node id the agent registered as (from its config directory)."""
    path = agent.home / "node.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("node_id")


def test_a_failed_deployment_explains_why(page: Page, live_server, developer):
    """No node anywhere: after the match timeout the order fails with a reason a person can act on."""
    with order_sweeper():
        log_in(page, developer.email, "/deployments/new/?template=cpu")
        deployment_id = deploy_from_the_editor(page, spec())
        clock.advance(61)
        expect(page.get_by_test_id("failure-reason")).to_contain_text("none anywhere in fizz mode", timeout=SLOW_MS)
        expect(page.locator('[data-step="failed"]')).to_have_attribute("data-state", "failed")
        expect(page.get_by_test_id("timeline").locator('[data-kind="failed"]')).to_contain_text("hold was released")
        shot(page, "detail_failed")
        # Nothing polls any more.
        assert page.get_by_test_id("deployment-live").get_attribute("hx-trigger") is None
    assert Deployment.objects.get(id=deployment_id).status == DeploymentStatus.FAILED
