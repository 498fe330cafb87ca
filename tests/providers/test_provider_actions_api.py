"""What a provider does on a page, through /api/v1/provider (issue 23): list prices (GET and PUT
/provider/prices, checked as the prices page checks them), payouts (GET and POST /provider/payouts,
the earnings page's rules), slashes and their appeals (GET /provider/slashes[/{id}], POST
/provider/slashes/{id}/appeal, the stake page's rules). Every refusal is a 4xx with the API's error
shape naming the field; the routes need the `provider` scope to write and `read` to read."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from accounts.api_keys import api_key_create
from accounts.models import WalletLink
from billing.models import PayoutRequest, UsageMeter
from billing.services import account_get, hold_place, transaction_post
from chain.models import Chain, ChainTransaction, TxStatus
from chain.registry import ChainAddresses, registry_sync
from core import clock
from providers.models import GpuModel, ProviderGpuPrice, ProviderProfile, Slash, SlashAppeal
from providers.services import provider_prices_update
from providers.slashing import slash_decide
from tests.deployments.conftest import fund
from tests.factories import make_node, make_provider, make_user

pytestmark = pytest.mark.django_db
USD = 1_000_000
SPON = 10**18
EVM = "0x52908400098527886E0F7030069857D2E4169EE7"
PRICES = "/api/v1/provider/prices"
PAYOUTS = "/api/v1/provider/payouts"
SLASHES = "/api/v1/provider/slashes"


def api(user, **key) -> Client:
    _key, raw = api_key_create(user=user, label="provider actions test", **key)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def put(client: Client, path: str, body) -> object:
    return client.put(path, body, content_type="application/json")


def post(client: Client, path: str, body=None) -> object:
    return client.post(path, body if body is not None else {}, content_type="application/json")


def assert_field_error(response, status: int, field: str, message: str | None = None) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"message", "extra"}
    fields = [error["field"] for error in body["extra"].get("errors", [])] or [body["extra"].get("field")]
    assert field in fields, body
    assert field in body["message"] or body["extra"].get("field") == field, body
    if message is not None:
        assert message in body["message"], body


def assert_lacks(response, scope: str) -> None:
    assert response.status_code == 403, response.content
    assert response.json()["message"] == f"This key lacks the '{scope}' scope."
    assert response.json()["extra"]["required_scope"] == scope


# --- Prices ----------------------------------------------------------------------------------------

PRICE_BODY = {
    "gpu_prices": {"rtx4090": "0.35", "h100": "2.10"},
    "cpu_per_core_month": "0.80",
    "memory_per_gb_month": "0.12",
    "storage_per_gb_month": "0.015",
}


def test_prices_list_every_model_with_the_fizz_reference(provider):
    provider_prices_update(
        provider=provider,
        gpu_prices={"rtx4090": "0.30"},
        cpu_per_core_month="0.9",
        memory_per_gb_month="0.1",
        storage_per_gb_month="0.02",
    )
    response = api(provider.user).get(PRICES)
    assert response.status_code == 200, response.content
    body = response.json()
    models = list(GpuModel.objects.values_list("slug", flat=True))
    assert [row["gpu_model"] for row in body["gpu_prices"]] == models  # the catalog's order, all of it
    rows = {row["gpu_model"]: row for row in body["gpu_prices"]}
    assert rows["rtx4090"]["price_per_hour"] == "0.300000" and rows["rtx4090"]["price_per_hour_micros"] == 300_000
    assert rows["rtx4090"]["fizz_price_per_hour"] == "0.175000"  # the Fizz RTX 4090 price, multiplier 1
    assert rows["h100"]["price_per_hour"] is None and rows["h100"]["price_per_hour_micros"] is None
    h100 = GpuModel.objects.get(slug="h100")
    assert rows["h100"]["fizz_price_per_hour_micros"] == int(175_000 * h100.multiplier)
    assert body["cpu_per_core_month"] == {
        "price": "0.900000",
        "price_micros": 900_000,
        "fizz_price": "0.750000",
        "fizz_price_micros": 750_000,
    }
    assert body["storage_per_gb_month"]["price_micros"] == 20_000
    assert body["offered"] == 1


def test_put_sets_every_price_and_a_model_left_out_is_no_longer_offered(provider):
    ProviderGpuPrice.objects.create(provider=provider, gpu_model_id="a6000", price_per_hour_micros=1_500_000)
    response = put(api(provider.user, scopes=["provider"]), PRICES, PRICE_BODY)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["offered"] == 2
    stored = dict(
        ProviderGpuPrice.objects.filter(provider=provider).values_list("gpu_model_id", "price_per_hour_micros")
    )
    assert stored == {"rtx4090": 350_000, "h100": 2_100_000}  # a6000 was left out: not offered
    provider.refresh_from_db()
    assert (
        provider.cpu_price_per_core_month_micros,
        provider.memory_price_per_gb_month_micros,
        provider.storage_price_per_gb_month_micros,
    ) == (800_000, 120_000, 15_000)
    assert body == api(provider.user).get(PRICES).json()
    # null or "" is "not offered" too, as a blank field on the page.
    again = put(api(provider.user), PRICES, {**PRICE_BODY, "gpu_prices": {"rtx4090": None, "h100": " "}})
    assert again.status_code == 200 and again.json()["offered"] == 0
    assert not ProviderGpuPrice.objects.filter(provider=provider).exists()


def test_the_prices_page_shows_what_the_api_set(provider):
    assert put(api(provider.user), PRICES, PRICE_BODY).status_code == 200
    client = Client()
    client.force_login(provider.user)
    page = client.get("/provider/prices/").content.decode()
    assert 'name="gpu_h100" value="2.1"' in page and 'name="cpu_per_core_month" value="0.8"' in page


@pytest.mark.parametrize(
    ("change", "status", "field", "message"),
    [
        ({"gpu_prices": {"rtx4090": "100.01"}}, 400, "gpu_prices.rtx4090", "above the $100 limit"),
        ({"gpu_prices": {"rtx4090": "0"}}, 400, "gpu_prices.rtx4090", "A price must be above zero."),
        ({"gpu_prices": {"rtx4090": "cheap"}}, 400, "gpu_prices.rtx4090", "Enter a price in US dollars"),
        ({"gpu_prices": {"rtx4090": "٣"}}, 400, "gpu_prices.rtx4090", "Enter a price in US dollars"),
        ({"gpu_prices": {"rtx9999": "1.00"}}, 400, "gpu_prices.rtx9999", "Unknown GPU model 'rtx9999'."),
        ({"gpu_prices": {"rtx4090": 0.3}}, 422, "gpu_prices", 'as a string, e.g. "0.30"'),
        ({"gpu_prices": {"rtx4090": "1" * 41}}, 422, "gpu_prices.rtx4090", None),
        ({"gpu_prices": {"rtx4090": "0.3\x00"}}, 422, "gpu_prices", "NUL"),
        ({"gpu_prices": ["rtx4090"]}, 422, "gpu_prices", None),
        ({"cpu_per_core_month": ""}, 400, "cpu_per_core_month", "Enter a price in US dollars"),
        ({"memory_per_gb_month": "1000.01"}, 400, "memory_per_gb_month", "above the $1,000 limit"),
        ({"storage_per_gb_month": 1}, 422, "storage_per_gb_month", 'as a string, e.g. "0.75"'),
        ({"storage_per_gb_month": True}, 422, "storage_per_gb_month", None),
        ({"cpu_per_core_month": None}, 422, "cpu_per_core_month", None),
        ({"cpu_per_core": "0.80"}, 422, "cpu_per_core", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_price_is_a_4xx_naming_the_field_and_nothing_changes(provider, change, status, field, message):
    ProviderGpuPrice.objects.create(provider=provider, gpu_model_id="rtx4090", price_per_hour_micros=300_000)
    before = ProviderProfile.objects.filter(id=provider.id).values().get()
    response = put(api(provider.user), PRICES, {**PRICE_BODY, **change})
    assert_field_error(response, status, field, message)
    # The good prices in the same request were not written either: all or nothing.
    assert ProviderProfile.objects.filter(id=provider.id).values().get() == before
    assert dict(ProviderGpuPrice.objects.values_list("gpu_model_id", "price_per_hour_micros")) == {"rtx4090": 300_000}


def test_a_missing_price_is_422_naming_it(provider):
    body = {key: value for key, value in PRICE_BODY.items() if key != "memory_per_gb_month"}
    assert_field_error(put(api(provider.user), PRICES, body), 422, "memory_per_gb_month")
    not_json = put(api(provider.user), PRICES, "not json")
    assert not_json.status_code == 400 and not_json.json() == {"message": "Cannot parse request body", "extra": {}}


def test_prices_are_for_providers_only(db):
    user = make_user()
    for response in (api(user).get(PRICES), put(api(user), PRICES, PRICE_BODY)):
        assert response.status_code == 403
        assert response.json() == {"message": "Become a provider first.", "extra": {}}
    assert Client().get(PRICES).status_code == 401


def test_prices_scopes(provider):
    assert api(provider.user, scopes=["read"]).get(PRICES).status_code == 200
    assert api(provider.user, scopes=["provider"]).get(PRICES).status_code == 200
    assert_lacks(api(provider.user, scopes=["deploy"]).get(PRICES), "read")
    assert put(api(provider.user, scopes=["provider"]), PRICES, PRICE_BODY).status_code == 200
    for scopes in (["read"], ["deploy"], ["billing"]):
        assert_lacks(put(api(provider.user, scopes=scopes), PRICES, PRICE_BODY), "provider")
    assert ProviderGpuPrice.objects.filter(provider=provider).count() == 2  # from the one allowed PUT


def patch(client: Client, path: str, body) -> object:
    return client.patch(path, body, content_type="application/json")


def test_patch_changes_only_the_prices_given(provider):
    assert put(api(provider.user), PRICES, PRICE_BODY).status_code == 200
    change = {"gpu_prices": {"rtx4090": "0.40", "a6000": "1.2"}}
    response = patch(api(provider.user, scopes=["provider"]), PRICES, change)
    assert response.status_code == 200, response.content
    assert response.json()["offered"] == 3
    stored = dict(
        ProviderGpuPrice.objects.filter(provider=provider).values_list("gpu_model_id", "price_per_hour_micros")
    )
    assert stored == {"rtx4090": 400_000, "h100": 2_100_000, "a6000": 1_200_000}  # h100 kept
    provider.refresh_from_db()
    assert provider.cpu_price_per_core_month_micros == 800_000  # the unit prices kept too
    # A unit price alone; null stops offering a model.
    response = patch(api(provider.user), PRICES, {"memory_per_gb_month": "0.2", "gpu_prices": {"h100": None}})
    assert response.status_code == 200, response.content
    provider.refresh_from_db()
    assert (provider.cpu_price_per_core_month_micros, provider.memory_price_per_gb_month_micros) == (800_000, 200_000)
    assert set(ProviderGpuPrice.objects.filter(provider=provider).values_list("gpu_model_id", flat=True)) == {
        "rtx4090",
        "a6000",
    }
    # An empty PATCH changes nothing and answers the prices.
    assert patch(api(provider.user), PRICES, {}).json() == api(provider.user).get(PRICES).json()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"gpu_prices": {"rtx4090": "0"}}, 400, "gpu_prices.rtx4090"),
        ({"gpu_prices": {"rtx9999": "1"}}, 400, "gpu_prices.rtx9999"),
        ({"cpu_per_core_month": "free"}, 400, "cpu_per_core_month"),
        ({"cpu_per_core_month": None}, 422, "cpu_per_core_month"),
        ({"storage_per_gb_month": 0.01}, 422, "storage_per_gb_month"),
        ({"gpu": {}}, 422, "gpu"),
    ],
)
def test_a_bad_patch_is_a_4xx_naming_the_field_and_nothing_changes(provider, body, status, field):
    assert put(api(provider.user), PRICES, PRICE_BODY).status_code == 200
    before = api(provider.user).get(PRICES).json()
    # A good price beside the bad one is not written either.
    body = {**body, "gpu_prices": {"h100": "3.00", **body.get("gpu_prices", {})}}
    assert_field_error(patch(api(provider.user), PRICES, body), status, field)
    assert api(provider.user).get(PRICES).json() == before


def test_patch_needs_the_provider_scope(provider):
    for scopes in (["read"], ["deploy"], ["billing"]):
        assert_lacks(patch(api(provider.user, scopes=scopes), PRICES, {"gpu_prices": {"rtx4090": "0.3"}}), "provider")
    assert not ProviderGpuPrice.objects.filter(provider=provider).exists()


@pytest.mark.django_db(transaction=True)
def test_two_patches_at_once_both_land(provider):
    """Each PATCH reads the unit prices it keeps and writes them back: without the row lock, one of
    two concurrent PATCHes would write back the other's old value (a lost update)."""
    from django.db import connection

    from tests.needs import unavailable

    if connection.vendor != "postgresql":
        unavailable("concurrent PATCHes need PostgreSQL row locks: set DATABASE_URL=postgres://...")
    assert put(api(provider.user), PRICES, PRICE_BODY).status_code == 200
    cpu_key, memory_key = api(provider.user), api(provider.user)
    for round_ in range(1, 9):
        barrier = threading.Barrier(2)
        answers: list[int] = []

        def send(client: Client, body: dict, barrier=barrier, answers=answers) -> None:
            barrier.wait()
            try:
                answers.append(patch(client, PRICES, body).status_code)
            finally:
                connections.close_all()

        cpu, memory = f"0.{round_}1", f"0.{round_}2"
        threads = [
            threading.Thread(target=send, args=(cpu_key, {"cpu_per_core_month": cpu})),
            threading.Thread(target=send, args=(memory_key, {"memory_per_gb_month": memory})),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert answers == [200, 200]
        provider.refresh_from_db()
        assert (provider.cpu_price_per_core_month_micros, provider.memory_price_per_gb_month_micros) == (
            int(Decimal(cpu) * USD),
            int(Decimal(memory) * USD),
        ), f"round {round_}: a lost update"


# --- Payouts ---------------------------------------------------------------------------------------


@pytest.fixture
def chains(db, settings):
    """Base with $SPON and Arbitrum without; no node (a request sends nothing)."""
    settings.PAYOUT_MIN_USD = Decimal("1")
    settings.PAYOUT_APPROVAL_THRESHOLD_USD = Decimal("50")
    registry_sync(
        devnet=True,
        keys=("base",),
        addresses={"base": ChainAddresses(receiver="0x" + "11" * 20, spon_token="0x" + "22" * 20)},
    )
    registry_sync(devnet=True, keys=("arbitrum",), addresses={"arbitrum": ChainAddresses(receiver="0x" + "33" * 20)})
    Chain.objects.filter(key="base").update(explorer_tx_url="https://basescan.example/tx/{tx}")


def link_payout_address(user, address: str = EVM) -> WalletLink:
    return WalletLink.objects.create(
        user=user, address=address, purpose="payout", chain_id=8453, message="signed", signature="0x" + "00" * 65,
        linked_at=timezone.now(),
    )  # fmt: skip


def settle(user, micros: int) -> None:
    """Settled earnings, as the settlement run posts them."""
    transaction_post(
        kind="settlement",
        reference_type="settlement_run",
        reference_id=f"test-{user.id}-{micros}",
        lines=[
            (account_get(kind="provider_settled", user=user), micros),
            (account_get(kind="provider_pending", user=user), -micros),
        ],
    )


@pytest.fixture
def earning(provider, chains):
    """The provider with $100 settled and a linked payout address."""
    settle(provider.user, 100 * USD)
    link_payout_address(provider.user)
    return provider.user


def test_a_payout_under_the_threshold_is_approved_at_once(earning):
    response = post(api(earning, scopes=["provider"]), PAYOUTS, {"amount": "25.50", "chain": "base"})
    assert response.status_code == 201, response.content
    body = response.json()
    payout = PayoutRequest.objects.get()
    assert body["id"] == payout.id and payout.user == earning
    assert body["amount"] == "25.500000" and body["amount_micros"] == 25_500_000
    assert body["status"] == "approved" and body["needs_approval"] is False and body["approved_at"]
    assert (body["chain"], body["chain_name"], body["chain_id"]) == ("base", payout.chain.name, 8453)
    assert body["token_symbol"] == payout.chain.native_symbol and body["destination"] == EVM
    assert body["token_amount"] is None and body["tx_hash"] == "" and body["tx_status"] is None

    listing = api(earning).get(PAYOUTS).json()
    assert [item["id"] for item in listing["items"]] == [payout.id]
    assert listing["items"][0] == body
    balance = listing["balance"]
    assert (balance["settled"], balance["requested"], balance["payable"]) == ("100.000000", "25.500000", "74.500000")
    assert balance["minimum_micros"] == USD and balance["approval_threshold_micros"] == 50 * USD
    assert balance["payout_address"] == EVM


def test_a_payout_above_the_threshold_waits_for_an_admin_and_spon_is_paid_where_the_chain_has_it(earning):
    response = post(api(earning), PAYOUTS, {"amount": "60", "chain": "base", "token": "SPON"})
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "requested" and response.json()["needs_approval"] is True
    assert response.json()["token_symbol"] == "SPON"


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({"amount": "100.01", "chain": "base"}, 409, "amount", "You can request at most $100.00"),
        ({"amount": "0.50", "chain": "base"}, 400, "amount", "The smallest payout is $1.00"),
        ({"amount": "0", "chain": "base"}, 422, "amount", "Enter an amount above zero."),
        ({"amount": "1.005", "chain": "base"}, 422, "amount", "at most two decimal places"),
        ({"amount": 25, "chain": "base"}, 422, "amount", 'Write the amount as a string of dollars, e.g. "25.00".'),
        ({"amount": "-5", "chain": "base"}, 422, "amount", None),
        ({"amount": "1e3", "chain": "base"}, 422, "amount", None),
        ({"chain": "base"}, 422, "amount", None),
        ({"amount": "10"}, 422, "chain", None),
        ({"amount": "10", "chain": "nowhere"}, 400, "chain", "There is no chain 'nowhere'."),
        ({"amount": "10", "chain": "solana"}, 400, "chain", "There is no chain 'solana'."),
        ({"amount": "10", "chain": "base\x00"}, 422, "chain", "NUL"),
        ({"amount": "10", "chain": "arbitrum", "token": "SPON"}, 400, "token", "$SPON is not on"),
        ({"amount": "10", "chain": "base", "token": "DOGE"}, 400, "token", "Choose the token"),
        ({"amount": "10", "chain": "base", "token": 1}, 422, "token", None),
        ({"amount": "10", "chain": "base", "address": EVM}, 422, "address", "Extra inputs are not permitted"),
    ],
)
def test_a_refused_payout_is_a_4xx_naming_the_field(earning, body, status, field, message):
    assert_field_error(post(api(earning), PAYOUTS, body), status, field, message)
    assert not PayoutRequest.objects.exists()


def test_what_is_already_requested_is_not_payable_again(earning):
    assert post(api(earning), PAYOUTS, {"amount": "70", "chain": "base"}).status_code == 201
    refused = post(api(earning), PAYOUTS, {"amount": "30.01", "chain": "base"})
    assert refused.status_code == 409
    assert refused.json()["extra"] == {"field": "amount", "payable_micros": 30 * USD}
    assert "less $70.00 already requested" in refused.json()["message"]
    assert post(api(earning), PAYOUTS, {"amount": "30", "chain": "base"}).status_code == 201


def test_without_a_payout_address_the_refusal_says_where_to_link_one(provider, chains):
    settle(provider.user, 100 * USD)
    response = post(api(provider.user), PAYOUTS, {"amount": "10", "chain": "base"})
    assert response.status_code == 409, response.content
    assert response.json()["message"].startswith("Link a payout address first")
    assert response.json()["extra"] == {"field": "wallet", "link": "/account/wallets/"}
    assert api(provider.user).get(PAYOUTS).json()["balance"]["payout_address"] is None
    assert not PayoutRequest.objects.exists()


def test_payouts_are_for_providers_only(chains):
    developer = make_user(is_developer=True)
    settle(developer, 10 * USD)
    link_payout_address(developer)
    for response in (api(developer).get(PAYOUTS), post(api(developer), PAYOUTS, {"amount": "5", "chain": "base"})):
        assert response.status_code == 403, response.content
        assert response.json() == {"message": "Only providers have earnings to pay out.", "extra": {}}
    assert not PayoutRequest.objects.exists()


def test_the_list_pages_newest_first_with_reasons_and_the_transaction(earning, provider):
    base = Chain.objects.get(key="base")
    token = base.tokens.get(address="")
    payouts = [
        PayoutRequest.objects.create(
            user=earning,
            amount=(n + 1) * USD,
            destination=EVM,
            chain=base,
            token=token,
            token_symbol=token.symbol,
            status="approved",
        )  # fmt: skip
        for n in range(5)
    ]
    PayoutRequest.objects.filter(id=payouts[0].id).update(status="failed", failure_reason="The transaction failed: x")
    PayoutRequest.objects.filter(id=payouts[1].id).update(waiting_reason="No current rate for ETH.")
    tx_hash = "0x" + "ab" * 32
    tx = ChainTransaction.objects.create(
        chain=base, purpose="payout", reference=f"payout:{payouts[2].id}", key_env="KEY", sender=EVM, to=EVM,
        status=TxStatus.MINED, tx_hash=tx_hash,
    )  # fmt: skip
    PayoutRequest.objects.filter(id=payouts[2].id).update(
        status="paid", chain_transaction=tx, token_amount=4_100_000_000_000_000, usd_rate=Decimal("3000"),
        rate_at=timezone.now(), paid_at=timezone.now(),
    )  # fmt: skip
    other = make_provider()
    PayoutRequest.objects.create(user=other.user, amount=USD, destination=EVM, chain=base, token=token)

    client = api(earning)
    seen, cursor = [], None
    for _ in range(4):
        response = client.get(PAYOUTS, {"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        seen += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert [item["id"] for item in seen] == [payout.id for payout in reversed(payouts)]  # no other user's
    by_id = {item["id"]: item for item in seen}
    assert by_id[payouts[0].id]["status"] == "failed"
    assert by_id[payouts[0].id]["failure_reason"] == "The transaction failed: x"
    assert by_id[payouts[1].id]["waiting_reason"] == "No current rate for ETH."
    paid = by_id[payouts[2].id]
    assert (paid["status"], paid["tx_hash"], paid["tx_status"]) == ("paid", tx_hash, "mined")
    assert paid["tx_url"] == f"https://basescan.example/tx/{tx_hash}"
    assert paid["token_amount"] == "4100000000000000" and paid["usd_rate"] == "3000"
    assert paid["token_amount_text"] == f"0.0041 {token.symbol}"


@pytest.mark.parametrize("cursor", ["nonsense", "eyJ0IjoxfQ", "x" * 201])
def test_a_bad_cursor_or_limit_is_422(earning, cursor):
    assert_field_error(api(earning).get(PAYOUTS, {"cursor": cursor}), 422, "cursor")
    assert_field_error(api(earning).get(PAYOUTS, {"limit": 0}), 422, "limit")
    assert_field_error(api(earning).get(PAYOUTS, {"limit": 101}), 422, "limit")


def test_payouts_scopes(earning):
    assert api(earning, scopes=["read"]).get(PAYOUTS).status_code == 200
    assert api(earning, scopes=["provider"]).get(PAYOUTS).status_code == 200
    assert_lacks(api(earning, scopes=["billing"]).get(PAYOUTS), "read")
    assert post(api(earning, scopes=["provider"]), PAYOUTS, {"amount": "5", "chain": "base"}).status_code == 201
    for scopes in (["read"], ["billing"], ["deploy"]):
        assert_lacks(post(api(earning, scopes=scopes), PAYOUTS, {"amount": "5", "chain": "base"}), "provider")
    assert PayoutRequest.objects.count() == 1


# --- Slashes and appeals ---------------------------------------------------------------------------


@pytest.fixture
def slashed(provider, settings) -> Slash:
    """The fixture's provider (2000 $SPON recorded by an admin, no stake address) slashed 100 $SPON,
    applied at once off chain."""
    settings.STAKING_CONTRACT_ADDRESS = ""
    slash = slash_decide(provider=provider, amount_spon="100", reason="Fake GPUs", reference="test:fake")
    assert slash.status == "off_chain"
    return slash


def appeal(client: Client, slash_id, text="The node was up: see my logs.") -> object:
    return post(client, f"{SLASHES}/{slash_id}/appeal", {"text": text} if text is not None else {})


def test_the_slashes_list_says_status_amounts_and_whether_it_can_be_appealed(provider, slashed):
    response = api(provider.user).get(SLASHES)
    assert response.status_code == 200, response.content
    (item,) = response.json()["items"]
    assert response.json()["next_cursor"] is None
    assert item["id"] == slashed.id and item["status"] == "off_chain"
    assert item["amount"] == str(100 * SPON) and item["amount_spon"] == "100"
    assert item["amount_slashed_spon"] == "100"
    assert (item["reason"], item["reference"], item["reason_hash"]) == ("Fake GPUs", "test:fake", slashed.reason_hash)
    assert item["can_appeal"] is True and item["appeal"] is None
    assert item["tx_hash"] == "" and item["tx_status"] is None
    assert item["url"].endswith(f"/provider/stake/slashes/{slashed.id}/")


def test_an_appeal_is_sent_once_and_shows_in_the_list(provider, slashed):
    client = api(provider.user, scopes=["provider"])
    response = appeal(client, slashed.id)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == slashed.id and body["can_appeal"] is False
    assert body["appeal"]["status"] == "open" and body["appeal"]["text"] == "The node was up: see my logs."
    assert body["appeal"]["answer"] == "" and body["appeal"]["refund_status"] == ""
    stored = SlashAppeal.objects.get()
    assert (stored.slash_id, stored.text) == (slashed.id, "The node was up: see my logs.")
    assert api(provider.user).get(SLASHES).json()["items"][0] == body

    twice = appeal(client, slashed.id, "again")
    assert twice.status_code == 409
    assert twice.json() == {"message": "You have already appealed this slash.", "extra": {"field": "slash"}}
    assert SlashAppeal.objects.count() == 1


@pytest.mark.parametrize(
    ("text", "status", "message"),
    [
        ("   ", 400, "Write your appeal."),
        ("x" * 2001, 400, "The appeal has at most 2,000 characters."),
        ("bad\x07bell", 400, "cannot contain control characters"),
        ("bad\x00byte", 422, "NUL"),
        ("x" * 4001, 422, None),
        (None, 422, None),
        (42, 422, None),
    ],
)
def test_an_appeal_needs_a_text_of_at_most_2000_characters(provider, slashed, text, status, message):
    assert_field_error(appeal(api(provider.user), slashed.id, text), status, "text", message)
    assert not SlashAppeal.objects.exists()


def test_the_text_may_be_exactly_2000_characters(provider, slashed):
    assert appeal(api(provider.user), slashed.id, "x" * 2000).status_code == 201


def test_only_ones_own_applied_slash_can_be_appealed(provider, slashed, outsider):
    outside = api(outsider.user)
    refused = appeal(outside, slashed.id)
    assert refused.status_code == 404 and refused.json()["message"] == "No such slash."
    assert outside.get(f"{SLASHES}/{slashed.id}").status_code == 404
    assert outside.get(SLASHES).json()["items"] == []

    failed = slash_decide(provider=outsider, amount_spon="1", reason="x", reference="test:nothing-staked")
    assert failed.status == "failed"
    response = appeal(outside, failed.id)
    assert response.status_code == 409
    assert response.json()["message"] == "Only a slash that was applied can be appealed."
    assert outside.get(SLASHES).json()["items"][0]["can_appeal"] is False
    assert appeal(outside, 2**63).status_code == 422
    assert appeal(outside, 0).status_code == 422
    assert not SlashAppeal.objects.exists()


def test_slashes_are_for_providers_only(slashed):
    user = make_user(is_provider=True)  # the role, but no provider profile
    for response in (api(user).get(SLASHES), appeal(api(user), slashed.id)):
        assert response.status_code == 403
        assert response.json()["message"] == "Become a provider first."


def test_the_list_pages_newest_first(provider, slashed):
    later = [
        slash_decide(provider=provider, amount_spon=str(n + 1), reason=f"slash {n}", reference=f"test:page-{n}")
        for n in range(4)
    ]
    Slash.objects.filter(id__in=[s.id for s in later]).update(created_at=clock.now() + timedelta(minutes=1))
    client = api(provider.user)
    first = client.get(SLASHES, {"limit": 3}).json()
    second = client.get(SLASHES, {"limit": 3, "cursor": first["next_cursor"]}).json()
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert ids == [s.id for s in reversed(later)] + [slashed.id]
    assert second["next_cursor"] is None
    assert_field_error(client.get(SLASHES, {"cursor": "nonsense"}), 422, "cursor")


def test_a_lease_slash_comes_with_its_evidence(provider, slashed):
    node = make_node(provider=provider, is_simulated=False)
    renter = make_user()
    fund(renter, 10)
    hold = hold_place(user=renter, amount=USD, reference_type="test", reference_id=f"h{renter.id}")
    last_good = clock.now() - timedelta(minutes=5)
    UsageMeter.objects.create(
        hold_id=hold.id, renter=renter, payee=provider.user, reference_type="lease", reference_id="77",
        price_per_hour=180_000, fee_rate=Decimal("0.05"), started_at=last_good - timedelta(hours=1),
        closed_at=last_good, charged=180_000,
    )  # fmt: skip
    slash = slash_decide(
        provider=provider, amount_spon="1", reason="Lease 77 down", reference="lease-downtime:77",
        evidence_type="lease", evidence_id="77", node=node,
    )  # fmt: skip
    response = api(provider.user).get(f"{SLASHES}/{slash.id}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == slash.id and body["node_id"] == node.id and body["evidence_type"] == "lease"
    evidence = body["evidence"]
    assert evidence["kind"] == "lease" and evidence["node_name"] == node.name
    assert evidence["lease_meter"]["lease_id"] == "77"
    assert evidence["lease_meter"]["price_per_hour"] == "0.180000" and evidence["lease_meter"]["charged"] == "0.180000"
    assert evidence["failed_challenges"] == []
    plain = api(provider.user).get(f"{SLASHES}/{slashed.id}").json()["evidence"]
    assert plain["kind"] == "" and plain["lease_meter"] is None


def test_slashes_scopes(provider, slashed):
    assert api(provider.user, scopes=["read"]).get(SLASHES).status_code == 200
    assert api(provider.user, scopes=["read"]).get(f"{SLASHES}/{slashed.id}").status_code == 200
    assert_lacks(api(provider.user, scopes=["deploy"]).get(SLASHES), "read")
    for scopes in (["read"], ["deploy"], ["billing"]):
        assert_lacks(appeal(api(provider.user, scopes=scopes), slashed.id), "provider")
    assert not SlashAppeal.objects.exists()
    assert appeal(api(provider.user, scopes=["provider"]), slashed.id).status_code == 201
