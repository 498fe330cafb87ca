"""Monthly statements: the list, and a printable invoice whose totals add up.

The ledger spans the two months before the current one and the current one, derived from today:
run with --calendar at a 1 January or in March of a leap year, the months cross a year's end or
a 29 February. Each test runs on the 23rd of the current month at 20:00 UTC (the clock is moved
there for everything: the users' join dates, the ledger, the pages), so the current month
already has activity whatever today's day is.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from billing.models import TransactionKind
from billing.services import adjustment_post, hold_capture, topup_reverse
from billing.statements import funds_balance_at, statement_get, statement_months
from tests.billing_pages.conftest import USD, backdate, fund, rent
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.calendar]


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    def shift(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    @property
    def slug(self) -> str:  # as in the statement URLs: 2026-10
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def last_day(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    def at(self, day: int, hour: int = 12) -> datetime:
        return datetime(self.year, self.month, day, hour, tzinfo=UTC)


@pytest.fixture(autouse=True)
def now() -> Iterator[datetime]:
    """The 23rd of today's month, 20:00 UTC: the moment of every test here, users included."""
    today = timezone.now()
    moment = datetime(today.year, today.month, 23, 20, tzinfo=UTC)
    with time_machine.travel(moment, tick=True):
        yield moment


@pytest.fixture
def current(now) -> Month:
    return Month(now.year, now.month)


@pytest.fixture
def last(current) -> Month:
    """The month the statement tests close: activity on its first and last days."""
    return current.shift(-1)


@pytest.fixture
def ledger(developer, provider, current: Month, last: Month):
    """Three months of activity: the month before last, last month (the statement), this month."""
    first = current.shift(-2)
    staff = make_user(email="staff@example.test", is_staff=True)
    fund(developer, 100 * USD, when=first.at(20), memo="First top-up")
    rent(developer, provider, hold=30 * USD, charges=[(5 * USD, first.at(25))], when=first.at(24), lease="1")
    # Last month: usage on lease 1b (two settlements, one line) and a new lease 2, a refund, an adjustment.
    lease_one_charges = [(4 * USD, last.at(1, 1)), (3_333_333, last.at(15))]
    rental_one = rent(developer, provider, hold=40 * USD, charges=lease_one_charges, when=last.at(1, 0), lease="1b")
    rent(
        developer,
        provider,
        hold=20 * USD,
        charges=[(7_500_000, last.at(20))],
        when=last.at(19),
        lease="2",
        release_at=last.at(last.last_day, 23),
    )
    last_topup = fund(developer, 50 * USD, when=last.at(10), memo="Top-up last month")
    refund = topup_reverse(topup=last_topup, amount=15 * USD, idempotency_key="refund:last")
    backdate(refund, last.at(12))
    credit = adjustment_post(user=developer, amount=2 * USD, memo="Goodwill credit for downtime", created_by=staff)
    backdate(credit, last.at(last.last_day, 22))
    # This month: another charge on lease 1b (same hold) at midnight on the 1st, and a top-up.
    later = hold_capture(
        hold=rental_one.hold,
        amount=USD,
        payee=provider,
        fee_rate=Decimal("0.07"),
        idempotency_key="test-capture:1b:late",
    )
    backdate(later, current.at(1, 0))
    fund(developer, 10 * USD, when=current.at(5), memo="Top-up this month")


def test_statement_totals_add_up_and_close_at_the_month_end_balance(developer, ledger, current: Month, last: Month):
    statement = statement_get(user=developer, year=last.year, month=last.month)

    assert statement.number == f"SPH-{developer.id}-{last.year:04d}{last.month:02d}"
    assert (statement.period_start, statement.period_end) == (
        date(last.year, last.month, 1),
        date(last.year, last.month, last.last_day),
    )
    assert statement.is_final
    # The month before: 100 in, 5 used.
    assert statement.opening == 95 * USD == funds_balance_at(user=developer, moment=last.at(1, 0))
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
    assert statement.closing == funds_balance_at(user=developer, moment=current.at(1, 0))
    assert statement.closing == 95 * USD + 50 * USD - 14_833_333 - 15 * USD + 2 * USD


def test_the_next_statement_opens_where_the_last_one_closed(developer, ledger, current: Month, last: Month):
    closed = statement_get(user=developer, year=last.year, month=last.month)
    running = statement_get(user=developer, year=current.year, month=current.month)

    assert running.opening == closed.closing
    assert not running.is_final
    assert running.total == 10 * USD - USD


def test_holds_placed_and_released_are_not_statement_lines(developer, ledger, last: Month):
    statement = statement_get(user=developer, year=last.year, month=last.month)
    kinds = {group.kind for group in statement.groups}
    assert not kinds & {TransactionKind.HOLD_PLACE, TransactionKind.HOLD_RELEASE}


def test_statement_list_has_every_month_since_the_first_with_totals(developer, ledger, current: Month, last: Month):
    months = statement_months(user=developer)

    assert [month["slug"] for month in months] == [current.slug, last.slug, current.shift(-2).slug]
    closed = months[1]
    assert (closed["topups"], closed["usage"]) == (50 * USD, 14_833_333)
    assert closed["net"] == statement_get(user=developer, year=last.year, month=last.month).total
    # The row adds up: the refund and the adjustment are the "other" column.
    for month in months:
        assert month["topups"] - month["usage"] + month["other"] == month["net"]
    assert closed["other"] == -15 * USD + 2 * USD
    assert months[0]["current"] and not closed["current"]


def test_invoice_page_is_printable_and_shows_the_numbers(dev_client: Client, developer, ledger, last: Month):
    page = dev_client.get(f"/billing/statements/{last.slug}/").content.decode()

    assert f"SPH-{developer.id}-{last.year:04d}{last.month:02d}" in page
    name = f"{calendar.month_name[last.month]} {last.year}"
    assert f"1 {name} – {last.last_day} {name}" in page
    assert 'data-testid="invoice-opening" data-micros="95000000"' in page
    assert "Usage: lease 1b" in page and "−$7.333333" in page
    assert "Goodwill credit for downtime" in page
    assert f'data-testid="invoice-closing" data-micros="{95 * USD + 50 * USD - 14_833_333 - 13 * USD}"' in page
    assert "window.print()" in page
    assert 'class="crumbs no-print"' in page
    assert "Dana Developer" in page


def test_statements_list_page_links_each_month(dev_client: Client, developer, ledger, current: Month):
    page = dev_client.get("/billing/statements/").content.decode()
    for month in (current.shift(-2), current.shift(-1), current):
        assert f'href="/billing/statements/{month.slug}/"' in page
    assert f'href="/billing/statements/{current.shift(1).slug}/"' not in page
    closed = page.split(f'data-month="{current.shift(-1).slug}"', 1)[1].split("</tr>", 1)[0]
    assert "$50.00" in closed and "$14.833333" in closed and "−$13.00" in closed


@pytest.mark.parametrize(
    "slug", ["2026-13", "2026-00", "2099-01", "2020-01", "26-11", "next month", "before the first"]
)
def test_no_statement_for_impossible_future_or_earlier_months(dev_client: Client, ledger, current: Month, slug: str):
    slug = {"next month": current.shift(1).slug, "before the first": current.shift(-3).slug}.get(slug, slug)
    assert dev_client.get(f"/billing/statements/{slug}/").status_code == 404


def test_a_statement_shows_only_its_owners_money(
    dev_client: Client, outsider_client: Client, outsider, ledger, current: Month
):
    assert "Top-up this month" in dev_client.get(f"/billing/statements/{current.slug}/").content.decode()
    page = outsider_client.get(f"/billing/statements/{current.slug}/").content.decode()

    assert f"SPH-{outsider.id}-{current.year:04d}{current.month:02d}" in page
    assert "Top-up this month" not in page
    assert 'data-testid="invoice-closing" data-micros="0"' in page
    # They joined this month (today, for the product): no statement for last month.
    assert outsider_client.get(f"/billing/statements/{current.shift(-1).slug}/").status_code == 404
