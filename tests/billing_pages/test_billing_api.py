"""GET /billing/balance, GET /billing/transactions (cursor, filters), POST /billing/topups."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from billing.models import LedgerTransaction, TopUp, TransactionKind
from billing.services import topup_reverse
from core.errors import ApplicationError
from tests.billing_pages.conftest import USD, backdate, fund, rent

pytestmark = pytest.mark.django_db
BALANCE = "/api/v1/billing/balance"
TRANSACTIONS = "/api/v1/billing/transactions"
TOPUPS = "/api/v1/billing/topups"


def day(d: int, hour: int = 12, month: int = 11) -> datetime:
    return datetime(2026, month, d, hour, tzinfo=UTC)


def error_fields(response) -> list[str]:
    return [error["field"] for error in response.json()["extra"]["errors"]]


# --- Balance -------------------------------------------------------------------------------
def test_balance_shows_available_reserved_and_debt_as_exact_strings(dev_client: Client, developer, provider):
    fund(developer, 25 * USD)
    rent(developer, provider, hold=10 * USD, charges=[(1_234_567, day(2))], when=day(1))

    body = dev_client.get(BALANCE).json()

    assert body == {
        "available": "15.000000",
        "available_micros": 15 * USD,
        "reserved": "8.765433",
        "reserved_micros": 8_765_433,
        "debt": "0.000000",
        "debt_micros": 0,
        "spend_per_hour": "0.000000",
        "spend_per_hour_micros": 0,
        "runway_funds_micros": 15 * USD,
        "runway_seconds": None,
        "runway_text": "No running rental is spending credits",
    }


def test_balance_shows_debt_after_a_refund_the_credits_cannot_cover(dev_client: Client, developer, provider):
    topup = fund(developer, 20 * USD)
    rent(developer, provider, hold=15 * USD, charges=[], when=day(1))  # only 5 left available
    topup_reverse(topup=topup, amount=20 * USD, idempotency_key="refund:1")

    body = dev_client.get(BALANCE).json()

    assert (body["available"], body["reserved"], body["debt"]) == ("0.000000", "15.000000", "15.000000")


def test_a_new_user_has_a_zero_balance(dev_client: Client):
    assert dev_client.get(BALANCE).json()["available_micros"] == 0


# --- Transactions --------------------------------------------------------------------------
def test_transactions_carry_the_signed_change_of_each_balance(dev_client: Client, developer, provider):
    fund(developer, 30 * USD, when=day(1), memo="Card top-up")
    rental = rent(
        developer, provider, hold=10 * USD, charges=[(2_500_000, day(3))], when=day(2), lease="42", release_at=day(4)
    )

    items = dev_client.get(TRANSACTIONS).json()["items"]

    assert [(item["kind"], item["amount"], item["reserved_amount"]) for item in items] == [
        ("hold_release", "7.500000", "-7.500000"),
        ("hold_capture", "0.000000", "-2.500000"),
        ("hold_place", "-10.000000", "10.000000"),
        ("topup", "30.000000", "0.000000"),
    ]
    assert items[1]["reference"] == {"type": "lease", "id": "42"}
    assert items[1]["id"] == rental.captures[0].id
    assert items[3]["memo"] == "Card top-up"
    assert items[3]["created_at"].startswith("2026-11-01T12:00:00")
    assert items[3]["amount_micros"] == 30 * USD


def test_cursor_pages_walk_every_transaction_once_newest_first(dev_client: Client, developer):
    txns = [fund(developer, (n + 1) * USD) for n in range(7)]
    # Three share a timestamp: the id breaks the tie, so none is skipped or repeated at a page edge.
    for txn in txns[:3]:
        backdate(txn, day(5))
    for n, txn in enumerate(txns[3:]):
        backdate(txn, day(6 + n))
    expected = [txn.id for txn in reversed(txns[3:])] + sorted((txn.id for txn in txns[:3]), reverse=True)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = dev_client.get(TRANSACTIONS, params).json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == expected
    assert pages == 3


@pytest.mark.calendar
def test_filter_by_kind_and_dates(dev_client: Client, developer, provider):
    fund(developer, 50 * USD, when=day(1, month=10))
    fund(developer, 20 * USD, when=day(3))
    fund(developer, 10 * USD, when=day(30, hour=23, month=11))
    rent(developer, provider, hold=5 * USD, charges=[(USD, day(4))], when=day(3))

    topups = dev_client.get(TRANSACTIONS, {"kind": "topup"}).json()["items"]
    november = dev_client.get(TRANSACTIONS, {"date_from": "2026-11-01", "date_to": "2026-11-30"}).json()["items"]
    one_day = dev_client.get(TRANSACTIONS, {"kind": "topup", "date_from": "2026-11-03", "date_to": "2026-11-03"})

    assert [item["amount"] for item in topups] == ["10.000000", "20.000000", "50.000000"]
    assert {item["kind"] for item in november} == {"topup", "hold_place", "hold_capture"}
    assert "50.000000" not in [item["amount"] for item in november]
    assert "10.000000" in [item["amount"] for item in november]  # 23:00 on the last day counts
    assert [item["amount"] for item in one_day.json()["items"]] == ["20.000000"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "bonus"}, "kind"),
        ({"date_from": "2026-13-01"}, "date_from"),
        ({"date_from": "1700000000"}, "date_from"),
        ({"date_to": "01/11/2026"}, "date_to"),
        ({"date_from": "2026-11-10", "date_to": "2026-11-01"}, "date_to"),
        ({"date_from": "2026-11-01\x00"}, "date_from"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJ0IjoxLCJpIjp0cnVlfQ"}, "cursor"),  # {"t":1,"i":true}
        ({"cursor": "x" * 201}, "cursor"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(dev_client: Client, developer, params: dict, field: str):
    fund(developer, USD)

    response = dev_client.get(TRANSACTIONS, params)

    assert response.status_code == 422
    assert field in error_fields(response)
    assert field in response.json()["message"]


# --- Top-ups -------------------------------------------------------------------------------
def test_topup_returns_what_stripe_js_needs(dev_client: Client, developer, fake_stripe, stripe_configured):
    response = dev_client.post(TOPUPS, {"amount": "25.50"}, content_type="application/json")

    assert response.status_code == 201
    topup = TopUp.objects.get(user=developer)
    assert response.json() == {
        "topup_id": topup.id,
        "client_secret": f"pi_fake_{topup.id}_secret_s3cr3t",
        "publishable_key": "pk_test_fake",
        "amount": "25.500000",
        "amount_micros": 25_500_000,
    }
    assert fake_stripe.calls == [(developer.id, 25_500_000)]
    # No credit until Stripe's webhook confirms the payment.
    assert not LedgerTransaction.objects.filter(kind=TransactionKind.TOPUP).exists()


@pytest.mark.parametrize(
    "amount",
    [
        "25.001",
        "1e3",
        "-5",
        "+5",
        "5,00",
        "",
        " ",
        "25.",
        ".5",
        "NaN",
        "Infinity",
        "1" * 20,
        "25\x00",
        25,
        25.5,
        True,
        None,
    ],
)
def test_topup_amount_must_be_a_decimal_string_with_two_places_at_most(
    dev_client: Client, fake_stripe, stripe_configured, amount
):
    response = dev_client.post(TOPUPS, {"amount": amount}, content_type="application/json")

    assert response.status_code == 422
    assert error_fields(response) == ["amount"]
    assert fake_stripe.calls == []


def test_topup_without_a_body_names_the_missing_field(dev_client: Client, fake_stripe, stripe_configured):
    response = dev_client.post(TOPUPS, {}, content_type="application/json")

    assert response.status_code == 422
    assert "amount" in error_fields(response)


@pytest.mark.parametrize("amount", ["4.99", "10000.01"])
def test_topup_outside_the_limits_is_refused_by_the_service(dev_client: Client, fake_stripe, stripe_configured, amount):
    response = dev_client.post(TOPUPS, {"amount": amount}, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"message": "A top-up must be between $5 and $10,000.", "extra": {"field": "amount"}}


def test_topup_when_stripe_is_not_configured_is_a_503(dev_client: Client, fake_stripe):
    fake_stripe.error = ApplicationError("Card payments are not configured on this server.", status=503)

    response = dev_client.post(TOPUPS, {"amount": "25.00"}, content_type="application/json")

    assert response.status_code == 503
    assert response.json()["message"] == "Card payments are not configured on this server."


def test_openapi_documents_the_billing_operations(client: Client):
    schema = client.get("/api/v1/openapi.json").json()
    operations = {
        operation["operationId"]: (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    for operation_id in ("billing_balance", "billing_transactions_list", "billing_topups_create"):
        path, _method, operation = operations[operation_id]
        assert path.startswith("/api/v1/billing/")
        assert operation["tags"] == ["billing"]
        assert {"401", "422"} <= set(operation["responses"])
        assert operation["security"]
