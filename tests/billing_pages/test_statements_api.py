"""GET /api/v1/billing/statements and /statements/{YYYY-MM}: the same statements as the pages, as
JSON. The ledger is test_statements.py's (three months around today, the clock on the 23rd)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.api_keys import api_key_create
from billing.statements import statement_get, statement_months
from core.money import exact_usd
from tests.billing_pages.conftest import USD, fund
from tests.billing_pages.test_statements import current, last, ledger, now  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db, pytest.mark.calendar]
LIST = "/api/v1/billing/statements"


def bearer(user, *scopes: str) -> dict[str, str]:
    _key, raw = api_key_create(user=user, label="statements", scopes=list(scopes))
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def page_micros(client: Client, slug: str, testid: str) -> int:
    page = client.get(f"/billing/statements/{slug}/").content.decode()
    return int(re.search(rf'data-testid="{testid}" data-micros="(-?[0-9]+)"', page).group(1))


def test_the_list_has_every_month_with_the_pages_totals(dev_client: Client, developer, ledger, current, last):  # noqa: F811
    response = dev_client.get(LIST)

    assert response.status_code == 200
    months = response.json()
    expected = statement_months(user=developer)
    assert [m["period"] for m in months] == [current.slug, last.slug, current.shift(-2).slug]
    for got, row in zip(months, expected, strict=True):
        assert (got["year"], got["month"], got["name"], got["number"]) == (
            row["year"],
            row["month"],
            row["name"],
            row["number"],
        )
        for name in ("topups", "usage", "other", "net"):
            assert got[f"{name}_micros"] == row[name]
            assert got[name] == exact_usd(row[name])
        assert got["topups_micros"] - got["usage_micros"] + got["other_micros"] == got["net_micros"]
    closed = months[1]
    assert (closed["topups"], closed["usage"], closed["other"]) == ("50.000000", "14.833333", "-13.000000")
    assert months[0]["current"] and not closed["current"]


def test_a_closed_month_is_the_statement_of_the_page_and_adds_up(dev_client: Client, developer, ledger, last):  # noqa: F811
    response = dev_client.get(f"{LIST}/{last.slug}")

    assert response.status_code == 200
    data = response.json()
    statement = statement_get(user=developer, year=last.year, month=last.month)
    assert data["number"] == statement.number == f"SPH-{developer.id}-{last.year:04d}{last.month:02d}"
    assert data["period"] == last.slug
    assert (data["period_start"], data["period_end"]) == (
        statement.period_start.isoformat(),
        statement.period_end.isoformat(),
    )
    assert data["is_final"] is True
    # The page's opening and closing balances, to the micro-dollar.
    assert data["opening_micros"] == page_micros(dev_client, last.slug, "invoice-opening") == 95 * USD
    assert data["closing_micros"] == page_micros(dev_client, last.slug, "invoice-closing")
    assert data["opening_micros"] + data["total_micros"] == data["closing_micros"]
    assert data["credits_micros"] + data["charges_micros"] == data["total_micros"]
    assert (data["total"], data["closing"]) == (exact_usd(statement.total), exact_usd(statement.closing))
    assert [(g["kind"], g["total_micros"]) for g in data["groups"]] == [
        (group.kind, group.total) for group in statement.groups
    ]
    usage = next(g for g in data["groups"] if g["kind"] == "hold_capture")
    assert [(line["reference"], line["count"], line["amount"]) for line in usage["lines"]] == [
        ("lease 1b", 2, "-7.333333"),
        ("lease 2", 1, "-7.500000"),
    ]
    adjustment = next(g for g in data["groups"] if g["kind"] == "adjustment")
    assert adjustment["lines"][0]["description"] == "Goodwill credit for downtime"
    for group in data["groups"]:
        assert sum(line["amount_micros"] for line in group["lines"]) == group["total_micros"]
    assert data["page_url"] == f"http://testserver/billing/statements/{last.slug}/"


def test_the_running_month_is_not_final_and_opens_where_the_last_closed(dev_client: Client, ledger, current, last):  # noqa: F811
    closed = dev_client.get(f"{LIST}/{last.slug}").json()
    running = dev_client.get(f"{LIST}/{current.slug}").json()

    assert running["is_final"] is False
    assert running["opening_micros"] == closed["closing_micros"]
    assert running["total_micros"] == 10 * USD - USD


@pytest.mark.parametrize("period", ["2026-13", "2026-00", "26-11", "2026-1", "2026_03", "march", "２０２６-03"])
def test_a_malformed_period_is_a_422_saying_how_to_write_it(dev_client: Client, ledger, period: str):  # noqa: F811
    response = dev_client.get(f"{LIST}/{period}")

    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "Invalid input. period: must be a month written YYYY-MM, e.g. 2026-03."
    assert body["extra"]["errors"] == [{"field": "period", "message": "must be a month written YYYY-MM, e.g. 2026-03"}]


@pytest.mark.parametrize("which", ["next month", "before the first", "2999-12", "0000-01"])
def test_a_month_without_a_statement_is_a_404_naming_the_range(dev_client: Client, ledger, current, which: str):  # noqa: F811
    period = {"next month": current.shift(1).slug, "before the first": current.shift(-3).slug}.get(which, which)

    response = dev_client.get(f"{LIST}/{period}")

    assert response.status_code == 404
    # As the page: no statement there either.
    assert dev_client.get(f"/billing/statements/{period}/").status_code == 404
    first = current.shift(-2).slug
    assert response.json() == {
        "message": f"No statement for {period}: your statements run from {first} to {current.slug}.",
        "extra": {},
    }


def test_reading_needs_the_read_or_billing_scope(client: Client, developer, ledger, last):  # noqa: F811
    for scopes in (("read",), ("billing",), ("full",)):
        assert client.get(LIST, **bearer(developer, *scopes)).status_code == 200
        assert client.get(f"{LIST}/{last.slug}", **bearer(developer, *scopes)).status_code == 200
    for path in (LIST, f"{LIST}/{last.slug}"):
        refused = client.get(path, **bearer(developer, "deploy"))
        assert refused.status_code == 403
        assert refused.json()["message"] == "This key lacks the 'read' scope."
        assert client.get(path).status_code == 401


def test_a_key_reads_only_its_owners_statements(client: Client, developer, outsider, ledger, current):  # noqa: F811
    fund(outsider, 3 * USD)
    mine = client.get(f"{LIST}/{current.slug}", **bearer(outsider, "read")).json()

    assert mine["number"] == f"SPH-{outsider.id}-{current.year:04d}{current.month:02d}"
    assert (mine["opening_micros"], mine["total_micros"], mine["closing_micros"]) == (0, 3 * USD, 3 * USD)
    assert "Top-up this month" not in str(mine)
    listed = client.get(LIST, **bearer(outsider, "read")).json()
    assert [m["period"] for m in listed] == [current.slug]  # they joined this month
    assert client.get(f"{LIST}/{current.shift(-1).slug}", **bearer(outsider, "read")).status_code == 404
