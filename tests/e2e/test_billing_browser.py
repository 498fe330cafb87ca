"""A developer logs in through the login form, sees their balance and transactions, exports CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from billing.models import LedgerTransaction
from billing.services import hold_capture, hold_place, hold_release, topup_credit
from tests.e2e.login import log_in, verified_user
from tests.factories import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
USD = 1_000_000


def backdate(txn: LedgerTransaction, when: datetime) -> None:
    LedgerTransaction.objects.filter(id=txn.id).update(created_at=when)


@pytest.fixture
def developer_with_history():
    developer = verified_user("ada@example.test", name="Ada")
    provider = make_user(email="host@example.test", is_provider=True)
    stranger = make_user(email="stranger@example.test")

    topup = topup_credit(
        user=developer,
        amount=40 * USD,
        reference_type="stripe_payment_intent",
        reference_id="pi_e2e_1",
        idempotency_key="e2e:topup:1",
        memo="Card top-up",
    )
    backdate(topup, datetime(2026, 11, 2, 9, tzinfo=UTC))
    hold = hold_place(user=developer, amount=10 * USD, reference_type="lease", reference_id="501")
    backdate(
        LedgerTransaction.objects.get(kind="hold_place", reference_id=str(hold.id)),
        datetime(2026, 11, 3, 9, tzinfo=UTC),
    )
    capture = hold_capture(
        hold=hold,
        amount=3_250_000,
        payee=provider,
        fee_rate=Decimal("0.07"),
        idempotency_key="e2e:capture:1",
        memo="Usage of lease 501",
    )
    backdate(capture, datetime(2026, 11, 3, 10, tzinfo=UTC))
    release = hold_release(hold=hold)
    backdate(release, datetime(2026, 11, 3, 11, tzinfo=UTC))
    # Someone else's money, which must appear nowhere.
    topup_credit(
        user=stranger,
        amount=999 * USD,
        reference_type="stripe_payment_intent",
        reference_id="pi_e2e_2",
        idempotency_key="e2e:topup:2",
        memo="Stranger's top-up",
    )
    return developer


def test_developer_logs_in_sees_balance_and_transactions_and_exports_csv(
    page: Page, live_server, developer_with_history
):
    log_in(page, "ada@example.test", "/billing/")  # a page behind login

    expect(page.get_by_test_id("whoami")).to_contain_text("ada@example.test")
    expect(page.get_by_test_id("balance-available")).to_have_text("$36.75")  # 40 − 3.25
    expect(page.get_by_test_id("balance-reserved")).to_have_text("$0.00")
    expect(page.get_by_test_id("spend-bar")).to_have_count(30)
    expect(page.get_by_test_id("transactions-table")).to_contain_text("Card top-up")
    expect(page.locator("main")).not_to_contain_text("Stranger")

    page.get_by_role("link", name="All transactions and filters").click()
    page.wait_for_url("**/billing/transactions/")
    expect(page.get_by_test_id("transaction-row")).to_have_count(4)

    # Filter by type through htmx: only the results swap, and the URL follows.
    page.evaluate("window.__marker = 1")
    page.select_option("#filter-kind", "topup")
    expect(page.get_by_test_id("transaction-row")).to_have_count(1)
    expect(page).to_have_url(f"{live_server.url}/billing/transactions/?kind=topup")
    assert page.evaluate("window.__marker") == 1, "filtering reloaded the page instead of swapping the results"
    assert page.locator("header.topbar").count() == 1

    # Export the filtered list, then everything.
    with page.expect_download() as download_info:
        page.get_by_test_id("export-csv").click()
    download = download_info.value
    assert download.suggested_filename == "spheron-transactions-topup.csv"
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert [(row["type"], row["description"], row["available_change_usd"]) for row in rows] == [
        ("topup", "Card top-up", "40.000000")
    ]

    page.get_by_role("link", name="Clear").click()
    expect(page.get_by_test_id("transaction-row")).to_have_count(4)
    with page.expect_download() as download_info:
        page.get_by_test_id("export-csv").click()
    download = download_info.value
    assert download.suggested_filename == "spheron-transactions.csv"
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert [(row["type"], row["available_change_usd"], row["reserved_change_usd"]) for row in rows] == [
        ("hold_release", "6.750000", "-6.750000"),
        ("hold_capture", "0.000000", "-3.250000"),
        ("hold_place", "-10.000000", "10.000000"),
        ("topup", "40.000000", "0.000000"),
    ]
    assert rows[1]["reference"] == "lease:501"
    assert sum(Decimal(row["available_change_usd"]) for row in rows) == Decimal("36.75")
