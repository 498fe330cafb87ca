"""The /billing/ pages: balance and top-up, transactions (htmx, CSV), spend chart, earnings."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import WalletLink
from billing.models import PayoutRequest, TopUp
from billing.services import account_get, transaction_post, transaction_reverse
from billing.statements import DaySpend, spend_chart, spend_per_day
from chain.registry import ChainAddresses, registry_sync
from core.errors import ApplicationError
from providers.models import ProviderProfile
from tests.billing_pages.conftest import USD, fund, rent

pytestmark = pytest.mark.django_db
EVM = "0x52908400098527886E0F7030069857D2E4169EE7"


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def text(response) -> str:
    """The page's visible text, with whitespace collapsed (for phrases that span tags)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html(response)).split())


def csv_rows(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


# --- Overview and top-up -------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/billing/",
        "/billing/transactions/",
        "/billing/transactions.csv",
        "/billing/statements/",
        "/billing/statements/2026-11/",
        "/billing/earnings/",
        "/billing/topups/1/",
    ],
)
def test_billing_pages_need_login(client: Client, path: str):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_overview_shows_balance_who_is_logged_in_and_recent_transactions(dev_client: Client, developer, provider):
    fund(developer, 40 * USD, memo="Card top-up")
    rent(developer, provider, hold=12_500_000, charges=[], when=timezone.now())

    page = text(dev_client.get("/billing/"))

    assert "dev@example.test" in page  # base.html: who is logged in
    assert "Available $27.50" in page
    assert "Reserved $12.50" in page
    assert "Card top-up" in page and "+$40.00" in page
    assert "owes" not in page


def test_overview_warns_about_debt(dev_client: Client, developer):
    from billing.services import topup_reverse

    topup = fund(developer, 10 * USD)
    developer_available = account_get(kind="user_available", user=developer)
    transaction_post(
        kind="adjustment",
        reference_type="user",
        reference_id=str(developer.id),
        lines=[(developer_available, -4 * USD), (account_get(kind="clearing_adjustments"), 4 * USD)],
    )
    topup_reverse(topup=topup, amount=10 * USD, idempotency_key="refund:debt")

    page = text(dev_client.get("/billing/"))

    assert "Your account owes $4.00" in page
    assert "New deployments are blocked" in page


def test_without_stripe_keys_the_page_says_card_payments_are_not_configured(dev_client: Client, stripe_not_configured):
    page = html(dev_client.get("/billing/"))

    assert "Card payments are not configured on this server." in page
    assert 'data-testid="topup-form"' not in page
    assert "js.stripe.com" not in page


def test_with_stripe_keys_the_page_has_a_top_up_form_but_no_outside_script(dev_client: Client, stripe_configured):
    page = html(dev_client.get("/billing/"))

    assert 'data-testid="topup-form"' in page
    assert 'action="/billing/topup/"' in page
    assert "js.stripe.com" not in page  # Stripe.js only on the pay step


def test_the_top_up_page_fills_in_an_amount_from_the_link(dev_client: Client, stripe_configured):
    """`sphnctl topup card --amount 25` prints /billing/topup/?amount=25.00; junk is not echoed."""
    page = html(dev_client.get("/billing/topup/?amount=25.00"))
    assert 'name="amount" value="25.00"' in page
    for junk in ("25.001", "abc", '"><script>', "-5"):
        page = html(dev_client.get("/billing/topup/", {"amount": junk}))
        assert 'name="amount" value=' not in page


def test_top_up_shows_stripe_elements_with_the_client_secret(
    dev_client: Client, developer, fake_stripe, stripe_configured
):
    response = dev_client.post("/billing/topup/", {"amount": "25"})

    page = html(response)
    topup = TopUp.objects.get(user=developer)
    assert fake_stripe.calls == [(developer.id, 25 * USD)]
    assert f'data-client-secret="pi_fake_{topup.id}_secret_s3cr3t"' in page
    assert 'data-publishable-key="pk_test_fake"' in page
    assert f'data-return-url="http://testserver/billing/topups/{topup.id}/"' in page
    assert '<script src="https://js.stripe.com/v3/"></script>' in page
    assert len(re.findall(r"<script src=\"https?://", page)) == 1  # the only outside script
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("", "This field is required."),
        ("25.999", "at most two decimal places"),
        ("abc", "at most two decimal places"),
        ("0", "above zero"),
        ("4.99", "between $5 and $10,000"),
        ("10000.01", "between $5 and $10,000"),
    ],
)
def test_a_bad_top_up_amount_is_a_form_error(
    dev_client: Client, fake_stripe, stripe_configured, amount: str, message: str
):
    page = html(dev_client.post("/billing/topup/", {"amount": amount}))

    assert message in page
    assert 'data-testid="topup-form"' in page
    assert "js.stripe.com" not in page


def test_a_stripe_failure_is_shown_on_the_form(dev_client: Client, fake_stripe, stripe_configured):
    fake_stripe.error = ApplicationError("The payment could not be started (card processor down).", status=502)

    page = html(dev_client.post("/billing/topup/", {"amount": "20"}))

    assert "The payment could not be started (card processor down)." in page


def test_top_up_without_stripe_keys_redirects_with_the_message(dev_client: Client, fake_stripe, stripe_not_configured):
    response = dev_client.post("/billing/topup/", {"amount": "20"}, follow=True)

    assert "Card payments are not configured on this server." in html(response)
    assert fake_stripe.calls == []


def test_top_up_status_is_the_owners_only(dev_client: Client, outsider_client: Client, developer):
    topup = TopUp.objects.create(user=developer, amount=25 * USD)

    assert "Waiting for Stripe to confirm" in html(dev_client.get(f"/billing/topups/{topup.id}/"))
    assert outsider_client.get(f"/billing/topups/{topup.id}/").status_code == 404


def test_top_up_status_polls_as_an_htmx_fragment(dev_client: Client, developer):
    topup = TopUp.objects.create(user=developer, amount=25 * USD, status=TopUp.Status.SUCCEEDED)

    fragment = html(
        dev_client.get(f"/billing/topups/{topup.id}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="div#topup-status")
    )

    assert fragment.lstrip().startswith('<div id="topup-status"')
    assert "Paid. $25.00 was added" in fragment
    assert "<header" not in fragment


# --- Transactions --------------------------------------------------------------------------
@pytest.fixture
def history(developer, provider):
    """October: a $50 top-up. November: a $20 top-up and a rental charged $3.25 then released."""
    october = fund(developer, 50 * USD, when=datetime(2026, 10, 5, 9, tzinfo=UTC), memo="October top-up")
    november = fund(developer, 20 * USD, when=datetime(2026, 11, 2, 9, tzinfo=UTC), memo="November top-up")
    rental = rent(
        developer,
        provider,
        hold=10 * USD,
        charges=[(2 * USD, datetime(2026, 11, 3, 10, tzinfo=UTC)), (1_250_000, datetime(2026, 11, 3, 11, tzinfo=UTC))],
        when=datetime(2026, 11, 3, 9, tzinfo=UTC),
        lease="77",
        release_at=datetime(2026, 11, 4, 9, tzinfo=UTC),
    )
    return {"october": october, "november": november, "rental": rental}


@pytest.mark.calendar
def test_transactions_page_filters_by_type_and_dates_from_the_query_string(dev_client: Client, history):
    page = html(dev_client.get("/billing/transactions/", {"kind": "topup", "date_from": "2026-11-01"}))

    assert "November top-up" in page and "October top-up" not in page
    assert "1–1 of 1 transactions" in page
    assert '<option value="topup" selected>' in page
    assert 'value="2026-11-01"' in page
    assert 'href="/billing/transactions.csv?kind=topup&amp;date_from=2026-11-01"' in page


def test_transactions_page_swaps_only_its_results_for_htmx(dev_client: Client, history):
    response = dev_client.get(
        "/billing/transactions/",
        {"kind": "hold_capture", "date_from": "", "date_to": ""},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="section#transactions-results",
    )

    fragment = html(response)
    assert fragment.lstrip().startswith('<section id="transactions-results">')
    assert "<header" not in fragment
    assert fragment.count('data-testid="transaction-row"') == 2
    assert response["HX-Push-Url"] == "/billing/transactions/?kind=hold_capture"


@pytest.mark.calendar
@pytest.mark.parametrize(
    "query", [{"kind": "nope"}, {"date_from": "yesterday"}, {"date_from": "2026-11-02", "date_to": "2026-11-01"}]
)
def test_bad_filters_are_explained_not_a_500(dev_client: Client, history, query: dict):
    page = html(dev_client.get("/billing/transactions/", query))

    assert "Some filters were ignored" in page
    assert page.count('data-testid="transaction-row"') >= 1


def test_a_page_number_past_the_end_shows_the_last_page(dev_client: Client, history):
    assert "October top-up" in html(dev_client.get("/billing/transactions/", {"page": "99"}))
    assert "must be a whole number" in html(dev_client.get("/billing/transactions/", {"page": "x"}))


@pytest.mark.calendar
def test_csv_export_has_every_row_as_decimal_usd(dev_client: Client, history):
    response = dev_client.get("/billing/transactions.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="spheron-transactions.csv"'
    rows = csv_rows(response)
    assert [(row["type"], row["available_change_usd"], row["reserved_change_usd"]) for row in rows] == [
        ("hold_release", "6.750000", "-6.750000"),
        ("hold_capture", "0.000000", "-1.250000"),
        ("hold_capture", "0.000000", "-2.000000"),
        ("hold_place", "-10.000000", "10.000000"),
        ("topup", "20.000000", "0.000000"),
        ("topup", "50.000000", "0.000000"),
    ]
    assert rows[-1]["date_utc"] == "2026-10-05T09:00:00+00:00"
    assert rows[-1]["description"] == "October top-up"
    assert rows[1]["reference"] == "lease:77"
    assert rows[1]["type_label"] == "Usage charged"


@pytest.mark.calendar
def test_csv_export_uses_the_same_filters_either_way(dev_client: Client, history):
    query = {"kind": "topup", "date_from": "2026-11-01", "date_to": "2026-11-30"}
    by_path = dev_client.get("/billing/transactions.csv", query)
    by_format = dev_client.get("/billing/transactions/", {**query, "format": "csv"})

    assert by_path["Content-Disposition"] == (
        'attachment; filename="spheron-transactions-topup-from-2026-11-01-to-2026-11-30.csv"'
    )
    assert csv_rows(by_path) == csv_rows(by_format)
    assert [row["description"] for row in csv_rows(dev_client.get("/billing/transactions.csv", query))] == [
        "November top-up"
    ]


@pytest.mark.calendar
def test_csv_export_refuses_bad_filters(dev_client: Client, history):
    response = dev_client.get("/billing/transactions.csv", {"date_from": "2026-02-30"})

    assert response.status_code == 400
    assert "date_from" in response.content.decode()


def test_csv_cells_cannot_become_spreadsheet_formulas(dev_client: Client, developer):
    txn = fund(developer, USD, memo='=HYPERLINK("http://evil.test")')

    [row] = csv_rows(dev_client.get("/billing/transactions.csv"))

    assert row["description"] == '\'=HYPERLINK("http://evil.test")'
    assert row["id"] == str(txn.id)


def test_nobody_sees_another_users_transactions(outsider_client: Client, history):
    assert "October top-up" not in html(outsider_client.get("/billing/transactions/"))
    assert csv_rows(outsider_client.get("/billing/transactions.csv")) == []
    assert "No transactions yet" in html(outsider_client.get("/billing/"))


# --- Spend chart ---------------------------------------------------------------------------
@pytest.mark.calendar
def test_spend_per_day_has_every_day_of_the_last_30_with_zeros(midday, developer, provider):
    today = timezone.now().date()

    def at(days_ago: int, hour: int) -> datetime:
        return datetime.combine(today - timedelta(days=days_ago), datetime.min.time(), tzinfo=UTC) + timedelta(
            hours=hour
        )

    fund(developer, 20 * USD, when=at(32, 0))
    rent(
        developer,
        provider,
        hold=20 * USD,
        charges=[(3 * USD, at(0, 1)), (USD, at(0, 2)), (2_500_000, at(10, 5)), (7 * USD, at(30, 5))],
        when=at(31, 0),
    )
    fund(developer, 100 * USD, when=at(1, 3))  # a top-up is not spend

    spend = spend_per_day(user=developer)

    assert len(spend) == 30
    assert spend[0].day == today - timedelta(days=29) and spend[-1].day == today
    by_day = {item.day: item.amount for item in spend}
    assert by_day[today] == 4 * USD
    assert by_day[today - timedelta(days=10)] == 2_500_000
    assert sum(by_day.values()) == 6_500_000  # 30 days ago is outside the window
    assert sum(1 for amount in by_day.values() if amount == 0) == 28


@pytest.mark.calendar
def test_a_reversed_charge_is_not_spend(midday, developer, provider):
    now = timezone.now()
    fund(developer, 5 * USD)
    rental = rent(developer, provider, hold=5 * USD, charges=[(2 * USD, now), (USD, now)], when=now)
    transaction_reverse(txn=rental.captures[1], memo="Node was down; charge refunded")

    assert sum(item.amount for item in spend_per_day(user=developer)) == 2 * USD


@pytest.mark.calendar
def test_spend_chart_scales_to_a_round_maximum_and_labels_axes(midday, dev_client: Client, developer, provider):
    today = timezone.now().date()
    noon = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    fund(developer, 20 * USD)
    rent(developer, provider, hold=20 * USD, charges=[(13 * USD, noon)], when=noon - timedelta(hours=1))

    chart = spend_chart(spend_per_day(user=developer))
    page = html(dev_client.get("/billing/"))

    assert [tick["value"] for tick in chart.ticks] == [0, 5 * USD, 10 * USD, 15 * USD, 20 * USD]
    tallest = chart.bars[-1]
    assert tallest["height"] == pytest.approx(chart.plot_height * 13 / 20, abs=0.1)
    assert all(bar["zero"] and bar["height"] == 1 for bar in chart.bars[:-1])
    assert page.count('data-testid="spend-bar"') == 30
    assert f'data-day="{today:%Y-%m-%d}" data-micros="{13 * USD}"' in page
    assert "USD per day" in page and "Day (UTC)" in page and "$20.00" in page


def test_a_spend_chart_of_fractions_of_a_cent_labels_its_axis_with_enough_decimals(dev_client: Client):
    today = timezone.now().date()
    chart = spend_chart([DaySpend(day=today, amount=50)])  # $0.00005 in a day: a minute of a cheap CPU

    # Every tick a round amount the ledger can hold (not 13, 25, 38: quarters of 50 rounded).
    assert [tick["value"] for tick in chart.ticks] == [0, 20, 40, 60, 80]
    assert chart.tick_places == 5
    labels = [tick["label"] for tick in chart.ticks]
    assert labels == ["$0", "$0.00002", "$0.00004", "$0.00006", "$0.00008"]  # not five "$0.00"
    assert chart.left >= 30 + 7 * len("$0.00002")  # the labels clear the axis title
    assert chart.bars[0]["x"] > chart.left
    assert spend_chart([DaySpend(day=today, amount=13 * USD)]).tick_places == 2
    # Ten micro-USD: quarters of 2.5 cannot be held by the ledger; steps of 5 can.
    assert [tick["label"] for tick in spend_chart([DaySpend(day=today, amount=10)]).ticks] == [
        "$0", "$0.000005", "$0.000010", "$0.000015", "$0.000020",
    ]  # fmt: skip
    # A few cents: steps of a cent, not a twentieth of one.
    assert [tick["label"] for tick in spend_chart([DaySpend(day=today, amount=37_000)]).ticks] == [
        "$0", "$0.01", "$0.02", "$0.03", "$0.04",
    ]  # fmt: skip


@pytest.mark.calendar
def test_an_empty_spend_chart_still_draws_thirty_days(midday, dev_client: Client):
    page = html(dev_client.get("/billing/"))
    assert page.count('class="bar zero"') == 30


# --- Provider earnings ---------------------------------------------------------------------
def settle(provider, micros: int) -> None:
    """Move pending earnings to settled (what the later settlement job will do)."""
    transaction_post(
        kind="settlement",
        reference_type="settlement_run",
        reference_id="test",
        lines=[
            (account_get(kind="provider_pending", user=provider), -micros),
            (account_get(kind="provider_settled", user=provider), micros),
        ],
        memo="Earnings settled",
    )


@pytest.fixture
def provider_client(provider) -> Client:
    client = Client()
    client.force_login(provider)
    return client


@pytest.fixture
def earned(developer, provider):
    fund(developer, 100 * USD)
    now = timezone.now()
    rent(developer, provider, hold=50 * USD, charges=[(40 * USD, now)], when=now, lease="9")  # 7% fee: 37.20 net
    settle(provider, 30 * USD)


def test_earnings_show_pending_settled_and_each_settlement(provider_client: Client, earned):
    page = text(provider_client.get("/billing/earnings/"))

    assert "Pending $7.20" in page
    assert "Settled $30.00" in page
    assert "$30.00 can be paid out" in page
    assert "lease 9" in page
    assert "$40.00 $2.80 +$37.20" in page  # charged to the renter, platform fee, credited
    assert "Earnings settled" in page and "−$30.00 +$30.00" in page
    assert "host@example.test" in page


@pytest.fixture
def payout_ready(provider, earned):
    """Base enabled for payouts and a payout address linked (paying on chain:
    tests/billing/test_payouts_onchain.py)."""
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver="0x" + "11" * 20)})
    WalletLink.objects.create(
        user=provider, address=EVM, purpose="payout", chain_id=8453, message="signed", signature="0x" + "00" * 65,
        linked_at=timezone.now(),
    )  # fmt: skip


def payout_form(amount: str, **fields) -> dict:
    return {"amount": amount, "chain": "base", "token": "native", **fields}


def test_a_payout_request_within_settled_earnings_is_created(provider_client: Client, provider, payout_ready):
    response = provider_client.post("/billing/earnings/", payout_form("12.50"))

    assert response.status_code == 302 and response["Location"] == "/billing/earnings/"
    payout = PayoutRequest.objects.get(user=provider)
    assert (payout.amount, payout.destination, payout.status) == (12_500_000, EVM, PayoutRequest.Status.APPROVED)
    page = text(provider_client.get("/billing/earnings/"))
    assert "$12.50 already requested · $17.50 can be paid out" in page
    assert "Approved, sending soon" in page


def test_a_payout_over_settled_earnings_is_a_form_error(provider_client: Client, provider, payout_ready):
    page = html(provider_client.post("/billing/earnings/", payout_form("30.01")))

    assert "You can request at most $30.00" in page
    assert not PayoutRequest.objects.exists()


def test_earlier_requests_count_against_the_limit(provider_client: Client, provider, payout_ready):
    provider_client.post("/billing/earnings/", payout_form("20"))
    page = html(provider_client.post("/billing/earnings/", payout_form("10.01")))

    assert "You can request at most $10.00" in page and "$20.00 already requested" in page
    assert PayoutRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (payout_form("10", chain=""), "This field is required."),
        (payout_form("10", chain="solana"), "payouts are paid on enabled EVM chains"),
        (payout_form("10", token="0x123"), "native coin or $SPON"),
        (payout_form(""), "This field is required."),
        (payout_form("-5"), "at most two decimal places"),
        (payout_form("0.00"), "above zero"),
        (payout_form("1.234"), "at most two decimal places"),
    ],
)
def test_bad_payout_input_is_a_form_error(provider_client: Client, payout_ready, form: dict, message: str):
    page = html(provider_client.post("/billing/earnings/", form))

    assert message in page
    assert not PayoutRequest.objects.exists()


def test_earnings_are_for_providers_only(dev_client: Client, outsider_client: Client, earned):
    response = outsider_client.get("/billing/earnings/", follow=True)

    assert response.redirect_chain == [("/account/", 302)]
    assert "Earnings are for providers" in html(response)
    assert outsider_client.post("/billing/earnings/", payout_form("1")).status_code == 302
    assert not PayoutRequest.objects.exists()
    assert "Earnings" not in html(dev_client.get("/billing/")).split("<main", 1)[0]  # no nav link


def test_nav_links_billing_for_everyone_logged_in_and_earnings_for_providers(
    client: Client, dev_client: Client, provider_client: Client
):
    assert 'href="/billing/"' not in html(client.get("/"))
    assert 'href="/billing/"' in html(dev_client.get("/"))
    assert 'href="/billing/earnings/"' not in html(dev_client.get("/"))
    assert 'href="/billing/earnings/"' in html(provider_client.get("/"))


@pytest.mark.calendar
@pytest.mark.parametrize("today", [date(2027, 1, 1), date(2028, 2, 29), date(2028, 3, 1), date(2026, 12, 31)])
def test_the_spend_window_is_the_30_days_to_today_across_a_year_end_and_a_leap_day(developer, provider, today: date):
    noon = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    fund(developer, 20 * USD)
    charges = [(USD, noon), (2 * USD, noon - timedelta(days=29)), (4 * USD, noon - timedelta(days=30))]
    rent(developer, provider, hold=20 * USD, charges=charges, when=noon - timedelta(days=31))

    spend = spend_per_day(user=developer, today=today)

    days = [item.day for item in spend]
    assert days == [today - timedelta(days=n) for n in range(29, -1, -1)]  # every day once, in order
    assert (spend[0].amount, spend[-1].amount) == (2 * USD, USD)  # the 31st day back is outside
    assert sum(item.amount for item in spend) == 3 * USD


def test_nothing_settled_disables_the_payout_button_and_says_why(provider_client: Client, provider):
    page = html(provider_client.get("/billing/earnings/"))

    assert '<button type="submit" disabled' in page
    assert "Nothing to pay out yet" in page


def test_settled_earnings_enable_the_payout_button(provider_client: Client, payout_ready):
    page = html(provider_client.get("/billing/earnings/"))

    assert '<button type="submit">Request payout</button>' in page
    assert "Nothing to pay out yet" not in page


def test_the_linked_payout_address_is_shown_and_the_onboarding_one_is_not_used(
    provider_client: Client, provider, earned
):
    registry_sync(devnet=True, keys=("base",), addresses={"base": ChainAddresses(receiver="0x" + "11" * 20)})
    ProviderProfile.objects.create(user=provider, display_name="Host", payout_evm_address=EVM, payout_solana_address="")
    page = html(provider_client.get("/billing/earnings/"))
    assert "No payout address linked." in page and 'href="/account/wallets/"' in page
    assert '<button type="submit" disabled aria-describedby="payout-no-wallet">' in page

    WalletLink.objects.create(
        user=provider, address=EVM, purpose="payout", chain_id=8453, message="signed", signature="0x" + "00" * 65,
        linked_at=timezone.now(),
    )  # fmt: skip
    wallet = html(provider_client.get("/billing/earnings/")).split('data-testid="payout-wallet"')[1].split("</p>")[0]
    assert EVM in wallet and "change it" in wallet
