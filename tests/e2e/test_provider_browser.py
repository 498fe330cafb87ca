"""A person signs up, becomes a provider, makes a node token in the browser, starts the real
`fizz` agent with it, and watches the node come online on the dashboard without reloading."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User
from providers.models import Node, NodeStatus, NodeToken
from tests.e2e.login import sign_up

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
EMAIL = "grace@example.test"
EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
# Registration, a first heartbeat and one table refresh (every 5 s) fit well inside this.
ONLINE_TIMEOUT_MS = 30_000


@pytest.fixture
def fast_heartbeats(settings):
    settings.NODE_HEARTBEAT_INTERVAL_SECONDS = 1
    settings.NODE_CHALLENGES_PER_HOUR = 0  # nothing random in a browser test
    # The live server runs in this process: a cache of its own keeps other test runs' nodes out.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"e2e-{uuid.uuid4()}"}
    }


def test_sign_up_become_provider_create_token_and_see_the_agent_come_online(
    page: Page, live_server, fast_heartbeats, fizz_agent, tmp_path
):
    # Sign up as a developer, confirm the e-mail address.
    sign_up(page, EMAIL)

    # Not a provider yet: the nav offers onboarding. A bad checksum is caught next to the field.
    page.get_by_test_id("nav-become-provider").click()
    page.wait_for_url("**/provider/onboarding/")
    # What makes a machine rentable, before one is added.
    expect(page.get_by_test_id("rentable-rules")).to_contain_text("200 $SPON for each GPU")
    expect(page.get_by_test_id("rentable-rules")).to_contain_text("A CPU-only machine counts as one unit")
    page.fill("input[name=display_name]", "Grace's Garage")
    page.fill("input[name=payout_evm_address]", EVM[:-1] + "D")
    page.select_option("select[name=default_region]", "us-east")
    page.get_by_role("button", name="Become a provider").click()
    expect(page.get_by_test_id("error-payout_evm_address")).to_contain_text("EIP-55")
    page.fill("input[name=payout_evm_address]", EVM)
    page.get_by_role("button", name="Become a provider").click()
    page.wait_for_url("**/provider/")
    expect(page.get_by_test_id("nodes-empty")).to_contain_text("No nodes yet")
    expect(page.get_by_test_id("nav-provider")).to_be_visible()
    assert User.objects.get(email=EMAIL).is_provider

    # A node token, shown once, with the command to run.
    page.get_by_role("link", name="Add a machine").click()
    page.wait_for_url("**/provider/tokens/")
    page.fill("input[name=label]", "this machine")
    page.get_by_role("button", name="Create token").click()
    raw = page.get_by_test_id("new-token").inner_text().strip()
    assert raw.startswith("fzt_")
    expect(page.get_by_test_id("new-token-command")).to_have_text(
        f"fizz start --server {live_server.url} --token {raw}"
    )
    assert NodeToken.objects.get(label="this machine").token_hash != raw

    # The dashboard, left open while the agent starts on "the machine".
    page.get_by_role("link", name="Nodes", exact=True).click()
    page.wait_for_url("**/provider/")
    page.evaluate("window.__notReloaded = true")

    log_path = tmp_path / "fizz.out"
    env = {**os.environ, "FIZZ_BACKOFF_CAP": "2", "FIZZ_MACHINE_ID": f"e2e-{uuid.uuid4()}"}
    command = [
        str(fizz_agent), "start", "--server", live_server.url, "--token", raw,
        "--runtime", "process", "--config-dir", str(tmp_path / "fizz"),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        agent = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        row = page.get_by_test_id("node-row")
        expect(row).to_have_count(1, timeout=ONLINE_TIMEOUT_MS)
        expect(row.get_by_test_id("node-status")).to_have_text("online", timeout=ONLINE_TIMEOUT_MS)
        expect(page.get_by_test_id("nodes-online")).to_contain_text("1 of 1")
        # The stake card followed the table: what the new node needs, never "0 of 0".
        expect(page.get_by_test_id("stake-card")).to_contain_text(re.compile(r"0 of [1-9][\d,]* \$SPON needed"))
        expect(page.get_by_test_id("stake-warning")).to_contain_text("Your stake is")
        expect(row.get_by_test_id("node-last-seen")).to_contain_text("s ago")
        assert page.evaluate("window.__notReloaded") is True, "the dashboard reloaded instead of refreshing the table"
        node = Node.objects.get(token__label="this machine")
        assert node.status == NodeStatus.ONLINE and node.provider.user.email == EMAIL

        # Its page, with the status that refreshes itself and the timeline so far.
        row.get_by_role("link").click()
        page.wait_for_url(f"**/provider/nodes/{node.id}/")
        expect(page.get_by_test_id("node-status-card").get_by_test_id("node-status")).to_have_text("online")
        expect(page.get_by_test_id("events-table")).to_contain_text("Came online")
        expect(page.get_by_test_id("strip-cell")).to_have_count(96)

        # A clean stop: the agent's last heartbeat says so, and the page follows by itself.
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
        expect(page.get_by_test_id("node-status-card").get_by_test_id("node-status")).to_have_text(
            "offline", timeout=ONLINE_TIMEOUT_MS
        )
        page.reload()
        expect(page.get_by_test_id("events-table")).to_contain_text("Agent stopped cleanly")
    except BaseException:
        print(f"--- fizz agent output ({log_path}) ---\n{log_path.read_text(errors='replace')}")
        raise
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(timeout=10)
