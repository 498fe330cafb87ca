"""In Chromium: a renter deploys a model-store template onto a provider's real `fizz` agent and reads
its logs (issue 23, "Show": deploy a template from the model store to a running agent and open its
logs).

The agent runs the process runtime (no Docker here), which runs the spec's command and ignores the
image; the seeded templates are GPU images with commands of their own that no CPU-only machine can
run. So the test adds one template row of its own (the seeded ones are left as they are): a CPU
workload that prints a line with the value the renter types into the template's form, then sleeps.

No Celery worker or beat runs: `order_sweeper()` (tests.e2e.beat) calls the real beat task
`sweep_open_orders` every 0.5 s, as beat and a worker would.
"""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from marketplace.models import Deployment, DeploymentStatus, Lease, LeaseLogLine, LeaseStatus, Template
from providers import services
from tests.deployments.conftest import fund
from tests.e2e.beat import order_sweeper
from tests.e2e.login import log_in, verified_user
from tests.e2e.test_deployment_browser import SLOW_MS
from tests.factories import make_user
from tests.integration.agents import online_node, staked_provider, wait_for

pytestmark = [
    pytest.mark.usefixtures("live_sqlite_reads"),
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
SLUG = "hello-process"
GREETING = "store-to-agent-7f3a"
# Prints the renter's value once, then stays up (a rental that runs), as a process of the agent.
PROGRAM = "import os, time; print('hello from the model store:', os.environ['GREETING'], flush=True); time.sleep(600)"
SPEC_TEMPLATE = f"""\
version: "2.0"
services:
  hello:
    image: python:3.12-slim
    command: ["{sys.executable}", "-c", "{PROGRAM}"]
    env: {{{{ ENV }}}}
    resources:
      cpu: {{units: 1}}
      memory: {{size: 1Gi}}
      storage: [{{size: 1Gi}}]
    price: {{token: USD, amount: {{{{ MAX_PRICE }}}}}}
deployment:
  duration: 1h
  mode: {{{{ MODE }}}}
  tiers: {{{{ TIERS }}}}
"""


@pytest.fixture
def hello_template(db) -> Template:
    """A test-only store template that the process runtime can run: CPU only, fizz mode, one
    variable the renter fills in."""
    return Template.objects.create(
        slug=SLUG,
        name="Hello process",
        description="Prints a greeting and stays up (test template).",
        category="base",
        mode="fizz",
        gpu_units=0,
        min_vram_gb=0,
        gpu_models=[],
        ports=[],
        env_vars=[{"name": "GREETING", "label": "Greeting", "required": True, "secret": False, "default": ""}],
        hf_model_default="",
        max_price_per_hour=Decimal("1.00"),
        spec_template=SPEC_TEMPLATE,
        order=0,
    )


@pytest.fixture
def provider():
    return staked_provider(make_user(email="host@example.test", is_provider=True))


@pytest.fixture
def renter():
    user = verified_user("ada@example.test", is_developer=True)
    fund(user, 20)
    return user


@pytest.fixture
def agent(agents, fast_server, provider):
    _row, token = services.node_token_create(provider=provider, label="this machine")
    return agents(fast_server, token, machine="store-machine").start()


def test_renter_deploys_a_store_template_onto_a_running_agent_and_reads_its_logs(
    page: Page, agent, hello_template, renter
):
    try:
        node = wait_for(online_node, what="the agent's node to come online")
    except AssertionError:
        pytest.fail(f"agent output:\n{agent.output()}")

    with order_sweeper() as sweeper:
        log_in(page, renter.email, "/models/", behind_login=False)

        # The store prices the template on the agent's machine, the only offer that fits.
        card = page.locator(f'[data-testid="template-card"][data-slug="{SLUG}"]')
        expect(card.get_by_test_id("template-from")).to_contain_text(f"in {node.region_id}")
        card.get_by_test_id(f"template-link-{SLUG}").click()
        page.wait_for_url(f"**/models/{SLUG}/")

        page.fill("input[name=env_GREETING]", GREETING)
        page.get_by_test_id("deploy-template").click()
        page.wait_for_url(f"**/deployments/new/?node={node.id}&prefill=store")
        spec_text = page.get_by_test_id("spec-text").input_value()
        assert f"attributes: {{node: {node.id}}}" in spec_text and f'"GREETING": "{GREETING}"' in spec_text
        expect(page.get_by_test_id("pinned-node")).to_contain_text(f"Pinned to node {node.id}")
        expect(page.get_by_test_id("spec-valid")).to_be_visible()

        page.get_by_test_id("submit-deployment").click()
        page.wait_for_url("**/deployments/*/")
        deployment_id = int(page.url.rstrip("/").rsplit("/", 1)[1])

        # Matched to the agent's node, started there, and its output on the page without a reload.
        page.evaluate("window.__marker = 1")
        expect(page.locator('[data-step="running"]')).to_have_attribute("data-state", "current", timeout=SLOW_MS)
        expect(page.get_by_test_id("lease-node")).to_have_attribute("data-node-id", str(node.id))
        expect(page.get_by_test_id("log-lines")).to_contain_text(
            f"hello from the model store: {GREETING}", timeout=SLOW_MS
        )
        assert page.evaluate("window.__marker") == 1, "the page reloaded instead of updating itself"

        # The "raw" link opens the whole log as text.
        page.get_by_role("link", name="raw", exact=True).click()
        page.wait_for_url(f"**/deployments/{deployment_id}/logs/")
        expect(page.locator("body")).to_contain_text(f"stdout hello from the model store: {GREETING}")
        assert not sweeper.errors, sweeper.errors

    deployment = Deployment.objects.get(id=deployment_id)
    lease = Lease.objects.get(deployment=deployment)
    assert deployment.owner_id == renter.id and deployment.status == DeploymentStatus.RUNNING
    assert lease.node_id == node.id and lease.status == LeaseStatus.ACTIVE and lease.agent_state == "running"
    assert LeaseLogLine.objects.filter(lease=lease, line__contains=GREETING).count() == 1
