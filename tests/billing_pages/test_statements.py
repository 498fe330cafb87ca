"""Monthly statements: the list, and a printable invoice whose totals add up."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client

from billing.models import TransactionKind
from billing.services import adjustment_post, hold_capture, topup_reverse
from billing.statements import funds_balance_at, statement_get, statement_months
from tests.billing_pages.conftest import USD, backdate, fund, rent
from tests.factories import make_user

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
def ledger(developer, provider):
    """Two months of activity around the October/November boundary."""
    staff = make_user(email="staff@example.test", is_staff=True)
    fund(developer, 100 * USD, when=at(9, 20), memo="September top-up")
    rent(developer, provider, hold=30 * USD, charges=[(5 * USD, at(9, 25))], when=at(9, 24), lease="1")
    # October: usage on lease 1 (two settlements, one line) and a new lease 2, a refund, an adjustment.
    lease_one_charges = [(4 * USD, at(10, 1, 1)), (3_333_333, at(10, 15))]
    rental_one = rent(developer, provider, hold=40 * USD, charges=lease_one_charges, when=at(10, 1, 0), lease="1b")
    rent(
        developer,
        provider,
        hold=20 * USD,
        charges=[(7_500_000, at(10, 20))],
        when=at(10, 19),
        lease="2",
        release_at=at(10, 31, 23),
    )
    october_topup = fund(developer, 50 * USD, when=at(10, 10), memo="October top-up")
    refund = topup_reverse(topup=october_topup, amount=15 * USD, idempotency_key="refund:oct")
    backdate(refund, at(10, 12))
    credit = adjustment_post(user=developer, amount=2 * USD, memo="Goodwill credit for downtime", created_by=staff)
    backdate(credit, at(10, 30))
    # November: another charge on lease 1b (same hold) and a top-up.
    later = hold_capture(
        hold=rental_one.hold,
        amount=USD,
        payee=provider,
        fee_rate=Decimal("0.07"),
        idempotency_key="test-capture:1b:late",
    )
    backdate(later, at(11, 1, 0))
    fund(developer, 10 * USD, when=at(11, 5), memo="November top-up")


def test_statement_totals_add_up_and_close_at_the_month_end_balance(developer, ledger):
    statement = statement_get(user=developer, year=2026, month=10, now=NOW)

    assert statement.number == f"SPH-{developer.id}-202610"
    assert (statement.period_start.isoformat(), statement.period_end.isoformat()) == ("2026-10-01", "2026-10-31")
    assert statement.is_final
    # September: 100 in, 5 used.
    assert statement.opening == 95 * USD == funds_balance_at(user=developer, moment=at(10, 1, 0))
    groups = {group.kind: group for group in statement.groups}
    assert list(groups) == [
        TransactionKind.TOPUP,
        TransactionKind.HOLD_CAPTURE,
        TransactionKind.REFUND,
        TransactionKind.ADJUSTMENT,
    ]
    assert groups["topup"].total == 50 * USD
    usage = groups["hold_capture"]
    assert [(line.reference, line.count, line.amount) for line in usage.lines] == [
        ("lease 1b", 2, -7_333_333),
        ("lease 2", 1, -7_500_000),
    ]
    assert groups["refund"].total == -15 * USD
    assert groups["adjustment"].lines[0].description == "Goodwill credit for downtime"
    assert statement.total == sum(group.total for group in statement.groups)
    assert statement.credits + statement.charges == statement.total
    assert statement.closing == statement.opening + statement.total
    assert statement.closing == funds_balance_at(user=developer, moment=at(11, 1, 0))
    assert statement.closing == 95 * USD + 50 * USD - 14_833_333 - 15 * USD + 2 * USD


def test_the_next_statement_opens_where_the_last_one_closed(developer, ledger):
    october = statement_get(user=developer, year=2026, month=10, now=NOW)
    november = statement_get(user=developer, year=2026, month=11, now=NOW)

    assert november.opening == october.closing
    assert not november.is_final
    assert november.total == 10 * USD - USD


def test_holds_placed_and_released_are_not_statement_lines(developer, ledger):
    statement = statement_get(user=developer, year=2026, month=10, now=NOW)
    kinds = {group.kind for group in statement.groups}
    assert not kinds & {TransactionKind.HOLD_PLACE, TransactionKind.HOLD_RELEASE}


def test_statement_list_has_every_month_since_the_first_with_totals(developer, ledger):
    months = statement_months(user=developer, now=NOW)

    assert [month["slug"] for month in months] == ["2026-11", "2026-10", "2026-09"]
    october = months[1]
    assert (october["topups"], october["usage"]) == (50 * USD, 14_833_333)
    assert october["net"] == statement_get(user=developer, year=2026, month=10, now=NOW).total
    # The row adds up: the refund and the adjustment are the "other" column.
    for month in months:
        assert month["topups"] - month["usage"] + month["other"] == month["net"]
    assert october["other"] == -15 * USD + 2 * USD
    assert months[0]["current"] and not october["current"]


def test_invoice_page_is_printable_and_shows_the_numbers(dev_client: Client, developer, ledger):
    page = dev_client.get("/billing/statements/2026-10/").content.decode()

    assert f"SPH-{developer.id}-202610" in page
    assert "1 October 2026 – 31 October 2026" in page
    assert 'data-testid="invoice-opening" data-micros="95000000"' in page
    assert "Usage: lease 1b" in page and "−$7.333333" in page
    assert "Goodwill credit for downtime" in page
    assert f'data-testid="invoice-closing" data-micros="{95 * USD + 50 * USD - 14_833_333 - 13 * USD}"' in page
    assert "window.print()" in page
    assert 'class="crumbs no-print"' in page
    assert "Dana Developer" in page


def test_statements_list_page_links_each_month(dev_client: Client, developer, ledger):
    page = dev_client.get("/billing/statements/").content.decode()
    for slug in ("2026-09", "2026-10", "2026-11"):
        assert f'href="/billing/statements/{slug}/"' in page
    october = page.split('data-month="2026-10"', 1)[1].split("</tr>", 1)[0]
    assert "$50.00" in october and "$14.833333" in october and "−$13.00" in october


@pytest.mark.parametrize("slug", ["2026-13", "2026-00", "2099-01", "2020-01", "26-11"])
def test_no_statement_for_impossible_future_or_earlier_months(dev_client: Client, ledger, slug: str):
    assert dev_client.get(f"/billing/statements/{slug}/").status_code == 404


def test_a_statement_shows_only_its_owners_money(outsider_client: Client, outsider, ledger):
    page = outsider_client.get("/billing/statements/2026-11/").content.decode()

    assert f"SPH-{outsider.id}-202611" in page
    assert "November top-up" not in page
    assert 'data-testid="invoice-closing" data-micros="0"' in page
    assert outsider_client.get("/billing/statements/2026-10/").status_code == 404  # before they joined
