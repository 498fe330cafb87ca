"""The provider's earnings per day and a node's receipt in Chromium: the stacked bars and the table
agree, the node filter and the 90-day view are links, and a node's receipt opens term by term with
the figure recomputed, its JSON one click away."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from billing.models import AccountKind, LedgerTransaction, TransactionKind
from billing.services import account_get, transaction_post
from core import clock
from providers import services
from tests.e2e.login import log_in, verified_user
from tests.factories import make_node
from tests.providers.test_node_rewards import era_start_days_ago, full_inputs, make_era

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def provider_with_money(db):
    user = verified_user("ada@example.test", is_provider=True)
    provider = services.provider_onboard(
        user=user,
        display_name="Ada's Attic",
        payout_evm_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        default_region="us-east",
        default_mode="fizz",
    )
    node = make_node(provider=provider, name="attic-4090")
    start = era_start_days_ago(2)
    rate = Decimal("0.00001")  # the whole emission, 100,000 $SPON, is worth $1
    make_era([full_inputs(node, start)], start=start, rate=rate, rental={node.id: 2_100_000}, topups={node.id: 350_000})
    txn = transaction_post(
        kind=TransactionKind.HOLD_CAPTURE,
        reference_type="lease",
        reference_id="41",
        lines=[
            (account_get(kind=AccountKind.CLEARING_ADJUSTMENTS), -1_250_000),
            (account_get(kind=AccountKind.PROVIDER_PENDING, user=user), 1_250_000),
        ],
    )
    yesterday = clock.now().astimezone(UTC).date() - timedelta(days=1)
    noon = datetime.combine(yesterday, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    LedgerTransaction.objects.filter(id=txn.id).update(created_at=noon)
    return provider, node


def test_the_earnings_page_and_a_nodes_receipt(page: Page, live_server, provider_with_money):
    provider, node = provider_with_money
    log_in(page, provider.user.email, "/provider/")
    page.get_by_test_id("earnings-per-day-link").click()
    page.wait_for_url("**/provider/earnings/")
    expect(page.get_by_test_id("earnings-bar")).to_have_count(30)
    yesterday = f"{clock.now().astimezone(UTC).date() - timedelta(days=1):%Y-%m-%d}"
    # Yesterday: the rental charge (ledger) and the era's rewards and floor top-up (the day it ended).
    bar = page.locator(f'[data-testid="earnings-bar"][data-day="{yesterday}"]')
    expect(bar.locator("rect.segment")).to_have_count(3)
    for kind in ("rental", "rewards", "floor"):
        expect(bar.locator(f'rect[data-kind="{kind}"]')).to_have_count(1)
    height = float(bar.locator('rect[data-kind="rental"]').get_attribute("height"))
    assert height > 0
    row = page.locator(f'[data-testid="earnings-row"][data-day="{yesterday}"]')
    expect(row).to_contain_text("$1.25")
    expect(row).to_contain_text("$0.35")
    expect(row).to_contain_text("100,000")  # the only node: the whole emission
    totals = page.get_by_test_id("earnings-totals")
    assert int(totals.get_attribute("data-total")) == int(row.get_attribute("data-total"))
    expect(page.get_by_test_id("slash-rate-rule")).to_contain_text("shown in $SPON only")

    # The 90-day view and one node, by the links in the query string.
    page.get_by_role("link", name="90 d").click()
    expect(page).to_have_url(re.compile(r"days=90"))
    expect(page.get_by_test_id("earnings-bar")).to_have_count(90)
    page.select_option("select[name=node]", str(node.id))
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(rf"node={node.id}"))
    row = page.locator(f'[data-testid="earnings-row"][data-day="{yesterday}"]')
    expect(row).to_contain_text("$2.10")  # the era's rental for this node

    # The node's page: the era's row and its receipt, term by term.
    page.goto(f"/provider/nodes/{node.id}/")
    expect(page.get_by_test_id("reward-row")).to_have_count(1)
    expect(page.get_by_test_id("receipt-match")).to_be_visible()
    receipt = page.get_by_test_id("receipt")
    expect(receipt.get_by_test_id("term-points")).to_be_hidden()
    receipt.locator("summary").click()
    expect(receipt.get_by_test_id("term-uptime")).to_contain_text("= 0.958333")
    expect(receipt.get_by_test_id("term-liveness")).to_contain_text("ch-failed-1")
    expect(receipt.get_by_test_id("term-utilization")).to_contain_text("lease 41")
    expect(receipt.get_by_test_id("term-points")).to_contain_text("= 699.782572")
    expect(receipt.get_by_test_id("receipt-recomputed")).to_contain_text("This matches what the node was given")
    page.get_by_test_id("receipt-json").click()
    document = json.loads(page.locator("body").inner_text())
    assert document["node_id"] == node.id and Decimal(document["points"]) == Decimal("699.782572")
