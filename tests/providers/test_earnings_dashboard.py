"""The provider's earnings per day (issue 22, part 6): rental income from the ledger, $SPON rewards
(tokens and USD at the era's rate) and floor top-ups on the day the era ended, slashes on the day
they were decided (valued at the current $SPON rate, or in $SPON only without one); per node; the
table's totals add up; bad input is a 4xx; another provider's node is a 404; the queries do not
grow with the days shown."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing.models import AccountKind, LedgerTransaction, TransactionKind
from billing.services import account_get, transaction_post
from chain.models import Rate
from core import clock
from providers.models import AppealStatus, NodeReward, Slash, SlashAppeal, SlashStatus
from tests.factories import make_node, make_provider
from tests.providers.test_node_rewards import era_start_days_ago, full_inputs, make_era

SPON = 10**18


def today():
    return clock.now().astimezone(UTC).date()


def at_noon(days_ago: int) -> datetime:
    return datetime.combine(today() - timedelta(days=days_ago), datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)


def post(kind: str, lines, *, days_ago: int, reverses=None) -> LedgerTransaction:
    txn = transaction_post(
        kind=kind, reference_type="lease", reference_id="7", lines=lines, memo="test", reverses=reverses
    )
    LedgerTransaction.objects.filter(id=txn.id).update(created_at=at_noon(days_ago))
    return txn


def capture(user, amount: int, *, days_ago: int, fee: int = 0) -> LedgerTransaction:
    """A usage charge: the renter's reserved credits to the provider's pending earnings (and the fee)."""
    lines = [
        (account_get(kind=AccountKind.CLEARING_ADJUSTMENTS), -(amount + fee)),  # stands in for a renter
        (account_get(kind=AccountKind.PROVIDER_PENDING, user=user), amount),
    ]
    if fee:
        lines.append((account_get(kind=AccountKind.PLATFORM_FEES), fee))
    return post(TransactionKind.HOLD_CAPTURE, lines, days_ago=days_ago)


def slash(provider, amount_spon: int, *, days_ago: int, node=None, status=SlashStatus.APPLIED, ref="") -> Slash:
    return Slash.objects.create(
        provider=provider,
        amount=amount_spon * SPON,
        reason="test",
        reason_hash="0x" + "0" * 64,
        reference=ref or f"test:{amount_spon}:{days_ago}:{status}",
        status=status,
        created_at=at_noon(days_ago),
        node=node,
    )


@pytest.fixture
def owner_client(provider):
    client = Client()
    client.force_login(provider.user)
    return client


@pytest.fixture
def market(provider):
    """Two nodes of the provider, one of another provider, and a month of money."""
    box_a = make_node(provider=provider, name="box-a")
    box_b = make_node(provider=provider, name="box-b")
    other_provider = make_provider()
    other = make_node(provider=other_provider, name="theirs")
    user = provider.user
    # Rental: 1.00 and 0.50 charged yesterday, 0.20 given back yesterday (downtime), 0.30 five
    # days ago, 4.00 forty days ago (outside 30 days); a settlement and another provider's charge
    # are not income.
    capture(user, 1_000_000, days_ago=1, fee=70_000)
    capture(user, 500_000, days_ago=1)
    post(
        TransactionKind.REFUND,
        [
            (account_get(kind=AccountKind.USER_AVAILABLE, key="renter-back"), 200_000),
            (account_get(kind=AccountKind.PROVIDER_PENDING, user=user), -200_000),
        ],
        days_ago=1,
    )
    capture(user, 300_000, days_ago=5)
    capture(user, 4_000_000, days_ago=40)
    post(
        TransactionKind.SETTLEMENT,
        [
            (account_get(kind=AccountKind.PROVIDER_PENDING, user=user), -300_000),
            (account_get(kind=AccountKind.PROVIDER_SETTLED, user=user), 300_000),
        ],
        days_ago=1,
    )
    capture(other_provider.user, 9_000_000, days_ago=1)
    # Eras: the one of 3 days ago ends 2 days ago (rate 0.5; a floor top-up for box-a), the one of
    # 2 days ago ends yesterday (no rate: its $SPON has no USD value).
    start = era_start_days_ago(3)
    early = make_era(
        [full_inputs(box_a, start), full_inputs(box_b, start), full_inputs(other, start)],
        start=start,
        rate=Decimal("0.5"),
        rental={box_a.id: 2_100_000, box_b.id: 700_000},
        topups={box_a.id: 350_000},
    )
    start = era_start_days_ago(2)
    late = make_era([full_inputs(box_a, start), full_inputs(other, start)], start=start, rate=None)
    # Slashes: 100 $SPON for box-a yesterday, 10 $SPON (no node) 4 days ago; a failed one and one
    # whose appeal was upheld do not count, nor another provider's.
    slash(provider, 100, days_ago=1, node=box_a)
    slash(provider, 10, days_ago=4, status=SlashStatus.OFF_CHAIN)
    slash(provider, 1000, days_ago=1, node=box_a, status=SlashStatus.FAILED)
    upheld = slash(provider, 500, days_ago=1, node=box_b)
    SlashAppeal.objects.create(slash=upheld, text="x", status=AppealStatus.UPHELD, created_at=at_noon(1))
    slash(other_provider, 300, days_ago=1)
    Rate.objects.create(symbol="SPON", usd_per_unit=Decimal("0.25"), at=clock.now())
    return {"a": box_a, "b": box_b, "other": other, "early": early, "late": late}


ROW = re.compile(r'<tr data-testid="earnings-(?:row|totals)"([^>]*)>')
ATTR = re.compile(r'data-([a-z-]+)="([^"]*)"')


def table(html: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    rows, totals = {}, None
    for match in ROW.finditer(html):
        attrs = dict(ATTR.findall(match.group(1)))
        if "earnings-totals" in match.group(0):
            totals = attrs
        else:
            rows[attrs["day"]] = attrs
    return rows, totals


def day(days_ago: int) -> str:
    return f"{today() - timedelta(days=days_ago):%Y-%m-%d}"


def ints(row: dict[str, str], key: str) -> int:
    return int(row[key]) if row[key] else 0


def assert_adds_up(rows, totals) -> None:
    for row in rows.values():
        slash_usd = ints(row, "slash-usd")
        assert ints(row, "total") == ints(row, "rental") + ints(row, "spon-usd") + ints(row, "floor") - slash_usd
    for key in ("rental", "spon", "spon-usd", "floor", "slash-spon", "slash-usd", "total"):
        assert ints(totals, key) == sum(ints(row, key) for row in rows.values()), key


def test_each_day_holds_rental_rewards_floor_and_slashes_and_the_totals_add_up(owner_client, market):
    response = owner_client.get("/provider/earnings/")
    assert response.status_code == 200
    html = response.content.decode()
    rows, totals = table(html)
    assert len(rows) == 30 and day(0) in rows and day(29) in rows and day(30) not in rows
    early_a = NodeReward.objects.get(era=market["early"], node=market["a"])
    early_b = NodeReward.objects.get(era=market["early"], node=market["b"])
    late_a = NodeReward.objects.get(era=market["late"], node=market["a"])
    # Yesterday: rental 1.00 + 0.50 − 0.20; the late era's $SPON (no rate: $0); 100 $SPON slashed
    # at $0.25 = $25.
    assert ints(rows[day(1)], "rental") == 1_300_000
    assert ints(rows[day(1)], "spon") == int(late_a.spon)
    assert ints(rows[day(1)], "spon-usd") == 0
    assert ints(rows[day(1)], "slash-spon") == 100 * SPON
    assert ints(rows[day(1)], "slash-usd") == 25_000_000
    assert ints(rows[day(1)], "total") == 1_300_000 - 25_000_000
    # Two days ago: the early era ended; both nodes' rewards at $0.5 and box-a's floor top-up.
    assert ints(rows[day(2)], "spon") == int(early_a.spon) + int(early_b.spon)
    assert ints(rows[day(2)], "spon-usd") == early_a.spon_usd_micros + early_b.spon_usd_micros > 0
    assert ints(rows[day(2)], "floor") == 350_000
    assert ints(rows[day(2)], "rental") == 0  # the ledger's rental, not the eras'
    assert ints(rows[day(4)], "slash-spon") == 10 * SPON
    assert ints(rows[day(5)], "rental") == 300_000
    assert_adds_up(rows, totals)
    assert ints(totals, "rental") == 1_600_000  # the charge 40 days ago is outside
    assert ints(totals, "slash-spon") == 110 * SPON
    assert "(no rate)" in html  # the late era's rewards have no USD value
    assert html.count('data-testid="earnings-bar"') == 30
    assert "current $SPON rate, $0.25 per $SPON" in html
    assert "counts on the next day" in html


def test_ninety_days_reach_further_and_the_queries_do_not_grow_with_the_days(owner_client, market):
    with CaptureQueriesContext(connection) as seven:
        assert owner_client.get("/provider/earnings/?days=7").status_code == 200
    with CaptureQueriesContext(connection) as ninety:
        response = owner_client.get("/provider/earnings/?days=90")
    rows, totals = table(response.content.decode())
    assert len(rows) == 90
    assert ints(totals, "rental") == 5_600_000
    assert_adds_up(rows, totals)
    assert len(ninety.captured_queries) == len(seven.captured_queries)


def test_one_nodes_earnings_count_its_eras_rental_rewards_and_slashes(owner_client, market):
    box_a = market["a"]
    by_query = owner_client.get(f"/provider/earnings/?node={box_a.id}")
    by_path = owner_client.get(f"/provider/nodes/{box_a.id}/earnings/")
    assert by_query.status_code == by_path.status_code == 200
    rows, totals = table(by_query.content.decode())
    assert (rows, totals) == table(by_path.content.decode())
    early_a = NodeReward.objects.get(era=market["early"], node=box_a)
    assert ints(rows[day(2)], "rental") == 2_100_000  # the era's rental earnings, on its end day
    assert ints(rows[day(2)], "spon") == int(early_a.spon)
    assert ints(rows[day(2)], "floor") == 350_000
    assert ints(rows[day(1)], "rental") == 0  # the ledger's charges are not per node
    assert ints(rows[day(1)], "slash-spon") == 100 * SPON
    assert ints(totals, "slash-spon") == 100 * SPON  # the 10 $SPON slash has no node
    assert_adds_up(rows, totals)
    rows_b, totals_b = table(owner_client.get(f"/provider/earnings/?node={market['b'].id}").content.decode())
    assert ints(totals_b, "rental") == 700_000 and ints(totals_b, "floor") == 0
    assert ints(totals_b, "slash-spon") == 0  # its slash was upheld on appeal


def test_without_a_spon_rate_slashes_show_in_spon_only(owner_client, market):
    Rate.objects.all().delete()
    html = owner_client.get("/provider/earnings/").content.decode()
    rows, totals = table(html)
    assert rows[day(1)]["slash-usd"] == "" and totals["slash-usd"] == ""
    assert ints(rows[day(1)], "total") == 1_300_000  # not counted in USD
    assert ints(totals, "slash-spon") == 110 * SPON
    assert "shown in $SPON only and not included in the USD totals" in html
    assert "No SPON rate is known yet." in html
    assert 'data-kind="slashes"' not in html  # nothing drawn for them


def test_another_providers_node_is_404(owner_client, market):
    other = market["other"]
    assert owner_client.get(f"/provider/earnings/?node={other.id}").status_code == 404
    assert owner_client.get(f"/provider/nodes/{other.id}/earnings/").status_code == 404
    assert owner_client.get("/provider/earnings/?node=999999999").status_code == 404


@pytest.mark.parametrize(
    "query, message",
    [
        ("days=8", "'8' is not one of 7, 30, 90"),
        ("days=abc", "'abc' is not one of 7, 30, 90"),
        ("days=-7", "'-7' is not one of"),
        ("days=99999999999999999999", "is not one of 7, 30, 90"),
        ("days=%00", "is not one of"),
        ("node=abc", "'abc' is not a node id"),
        ("node=99999999999999999999999", "is not a node id"),
    ],
)
def test_bad_input_is_a_400_that_says_why_and_shows_the_default(owner_client, market, query, message):
    response = owner_client.get(f"/provider/earnings/?{query}")
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html.replace("&#x27;", "'")
    rows, totals = table(html)
    assert len(rows) == 30
    assert_adds_up(rows, totals)


def test_the_page_needs_a_provider_login(market):
    response = Client().get("/provider/earnings/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_dashboard_and_the_tabs_link_the_page(owner_client, market):
    html = owner_client.get("/provider/").content.decode()
    assert 'data-testid="earnings-per-day-link"' in html and 'href="/provider/earnings/"' in html
    page = owner_client.get(f"/provider/nodes/{market['a'].id}/").content.decode()
    assert f'href="/provider/nodes/{market["a"].id}/earnings/"' in page
    earnings = owner_client.get("/provider/earnings/").content.decode()
    assert '<a href="/provider/earnings/" aria-current="page" data-testid="subnav-earnings">' in earnings
    assert 'href="/provider/rewards/"' in earnings  # the claims page, beside it
